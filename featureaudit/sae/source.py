"""Where the frozen SAE comes from, and training one: the body of the `sae` rule.

  train     a TopK SAE trained once on full-precision activations with SAELens's SAETrainer,
            then only ever loaded
  disk      a folder saved by SAELens (`sae.save_model` / `save_inference_model`)
  saelens   a pretrained release (`SAE.from_pretrained`), see pretrained.py
All three end in a SAELens folder (results/<model>/sae) that every later job loads (sae.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..config import CaptureSettings, ModelRun, SaeConfig, SaeTraining
from ..errors import AuditError
from ..io import atomic_dir
from ..progress import log
from .frozen import check_hook, load_sae, sae_metadata


def train_sae(acts: np.ndarray, out_dir, hook_name: str, model_name: str, context_size: int,
              prepend_bos: bool, cfg: SaeTraining = SaeTraining(), device="cpu"):
    """Train a TopK SAE on (n, d_in) activations with SAELens and save the inference model."""
    from sae_lens import LoggingConfig, SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.sae import SAEMetadata

    if len(acts) < cfg.batch_size:
        raise AuditError(
            f"only {len(acts)} activations to train the SAE on, fewer than one batch of {cfg.batch_size}; "
            "raise corpus.sae_train_tokens or lower sae.train.batch_size"
        )
    torch.manual_seed(cfg.seed)
    d_in = acts.shape[1]
    sae_cfg = TopKTrainingSAEConfig(
        d_in=d_in, d_sae=cfg.d_sae, k=cfg.k, dtype="float32", device=str(device),
        metadata=SAEMetadata(hook_name=hook_name, model_name=model_name, context_size=context_size,
                             prepend_bos=prepend_bos),
    )
    sae = TopKTrainingSAE(sae_cfg)
    data = torch.from_numpy(np.ascontiguousarray(acts, dtype=np.float32))
    gen = torch.Generator().manual_seed(cfg.seed)

    def batches():  # SAELens's trainer shows the progress
        for _ in range(cfg.steps):
            idx = torch.randint(0, len(data), (cfg.batch_size,), generator=gen)
            yield data[idx].to(device)

    trainer_cfg = SAETrainerConfig(
        total_training_samples=cfg.steps * cfg.batch_size, train_batch_size_samples=cfg.batch_size,
        # Constant LR: on the default (24 K activations, 600 steps) it reached held-out FVU 0.23
        # with 1 511 live features, against 0.35 and 751 for cosine annealing to lr/10 in 400 steps.
        lr=cfg.lr, lr_end=cfg.lr, lr_scheduler_name="constant", device=str(device),
        logger=LoggingConfig(log_to_wandb=False), dead_feature_window=max(cfg.steps // 4, 1),
        feature_sampling_window=max(cfg.steps // 2, 1), n_batches_for_norm_estimate=1,
    )
    SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=batches()).fit()
    with atomic_dir(out_dir) as tmp:
        sae.save_inference_model(str(tmp))
        sorted_cfg(tmp)
    return load_sae(out_dir, device)


def sorted_cfg(folder) -> None:
    """SAELens writes cfg.json's keys in an order that varies between runs; sorted, the same
    SAE gives the same bytes (a rerun after a kill is compared byte for byte)."""
    cfg = Path(folder) / "cfg.json"
    cfg.write_text(json.dumps(json.loads(cfg.read_text()), sort_keys=True))


def fraction_variance_unexplained(sae, acts: np.ndarray, batch: int = 4096) -> float:
    x = torch.from_numpy(np.ascontiguousarray(acts, dtype=np.float32))
    err = tot = 0.0
    mean = x.mean(0)
    device = next(sae.parameters()).device
    with torch.no_grad():
        for s in range(0, len(x), batch):
            xb = x[s : s + batch].to(device)
            rec = sae.decode(sae.encode(xb)).cpu()
            err += float(((rec - x[s : s + batch]) ** 2).sum())
            tot += float(((x[s : s + batch] - mean) ** 2).sum())
    return err / tot


# --------------------------------------------------------------------------- the rule


def write_sae(run: ModelRun, capture: CaptureSettings, sae_cfg: SaeConfig, context_length: int,
             tokens_path, ref_dir, out_dir) -> None:
    """The `sae` rule: train the SAE on FP activations, or fetch the configured one, and save
    it as a SAELens folder that every later job loads."""
    from ..device import resolve_device

    device = resolve_device(run.device)
    if sae_cfg.source == "train":
        from ..inputs.tokens import read_tokens
        from ..model.capture import capture_matrix
        from ..model.reference import load_reference

        lm, _ = load_reference(ref_dir, run)
        acts = capture_matrix(lm, read_tokens(tokens_path, "sae_train"), capture)
        log(f"train SAE on {len(acts)} FP activations at {capture.hook}")
        sae = train_sae(acts, out_dir, capture.hook, run.name, context_length, capture.prepend_bos,
                        sae_cfg.train, device)
        fvu = fraction_variance_unexplained(sae, acts[-min(len(acts), 8192):])
        log(f"SAE trained: FVU {fvu:.3f} on training activations")
        return
    if sae_cfg.source == "disk":
        sae = load_sae(sae_cfg.path, device, output=False)
    else:
        from .pretrained import load_pretrained_sae

        sae, _ = load_pretrained_sae(sae_cfg.release, sae_cfg.id, device=str(device), config_key=run.name)
    check_hook(sae_metadata(sae)["hook_name"], capture.hook, run.name)
    with atomic_dir(out_dir) as tmp:
        sae.save_model(str(tmp))
        sorted_cfg(tmp)
