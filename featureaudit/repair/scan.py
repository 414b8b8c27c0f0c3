"""Sensitivity scan: quantize one tensor group at a time to a target type (the rest at the
reference), and measure what that single change does on the scan split's tokens: survived and
damaged fractions at every audited hook, and the KL of the final logits to FP. Then the
additivity check: whether the sum of single-group effects predicts what several groups
quantized together do. `write_scan` is the body of the `scan` rule.

What the network guarantees is used, not re-measured: a group in block L cannot change a hook
that is computed before block L (tested once on a tiny model), so those hooks keep FP's codes and
are not encoded again; and the residual stream entering block L is FP's, so it is computed once
(the FP pass) and each group's forward starts at its own block (`start_at`).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..compress.formats import gguf_round_trip
from ..config import CaptureSettings, ModelRun, Thresholds
from ..device import resolve_device
from ..hooks import HookPoint, parse_hook
from ..inputs.tokens import read_tokens
from ..io import write_csv
from ..model.architecture import decoder_layers, n_layers
from ..model.capture import HookCapture
from ..model.reference import load_reference
from ..progress import log
from ..sae.codes import sparse_encode
from ..sae.encoder import load_encoder
from ..sae.frozen import saved_sae_metadata, wants_centering
from ..measure.survival import PearsonAccumulator, fractions, survival_frame
from .allocate import gains
from .groups import Group, group_linears, model_groups, type_bits


def affects(group_layer: int, hook: HookPoint) -> bool:
    """Whether a change in block `group_layer` can reach the hook's value."""
    return group_layer < hook.layer if hook.point == "hook_resid_pre" else group_layer <= hook.layer


class _PassThrough(nn.Module):
    """Stands in for a block below the one a forward starts at: hands its input on."""

    def __init__(self, tuple_out: bool):
        super().__init__()
        self.tuple_out = tuple_out

    def forward(self, hidden_states, *args, **kwargs):
        return (hidden_states,) if self.tuple_out else hidden_states


@contextmanager
def start_at(model: nn.Module, layer: int, feed: dict, tuple_out: bool = False):
    """Within the block, the model's forward skips blocks 0..layer-1 and block `layer` reads
    `feed["x"]` (FP's residual stream entering it, for the current batch) instead."""
    layers = decoder_layers(model)
    saved = [layers[i] for i in range(layer)]
    for i in range(layer):
        layers[i] = _PassThrough(tuple_out)

    def replace(module, args, kwargs):
        if args:
            return (feed["x"],) + tuple(args[1:]), kwargs
        return args, {**kwargs, "hidden_states": feed["x"]}

    handle = layers[layer].register_forward_pre_hook(replace, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
        for i, block in enumerate(saved):
            layers[i] = block


@contextmanager
def quantized(linears: list, target: str):
    """The linears' weights replaced by the target type's quantize-dequantize (gguf-py), then put back."""
    saved = [lin.weight.detach().clone() for lin in linears]
    try:
        with torch.no_grad():
            for lin in linears:
                lin.weight.copy_(gguf_round_trip(lin.weight, target))
        yield
    finally:
        with torch.no_grad():
            for lin, w in zip(linears, saved):
                lin.weight.copy_(w)


@dataclass
class _HookState:
    hook: HookPoint
    sae: nn.Module
    center: bool
    fp_codes: list  # per batch: (token, feature, value) of FP


class Scanner:
    """The FP pass once (each block's input, each hook's codes, the log-probabilities), then
    any set of groups quantized together, measured against it."""

    def __init__(self, model: nn.Module, saes: dict, centers: dict, tokens: torch.Tensor, exclude_bos: bool,
                 thresholds: Thresholds, batch_size: int = 16):
        self.model = model
        self.device = next(model.parameters()).device
        self.tokens = tokens
        self.first = 1 if exclude_bos else 0
        self.thresholds = thresholds
        self.batch_size = batch_size
        self.n_layers = n_layers(model)
        self.hooks = [_HookState(parse_hook(h, self.n_layers), sae, bool(centers.get(h)), []) for h, sae in saes.items()]
        self.per_seq = tokens.shape[1] - self.first
        self.batches = [(s, min(s + batch_size, len(tokens))) for s in range(0, len(tokens), batch_size)]
        self._fp_pass()

    def _codes(self, state: _HookState, acts: torch.Tensor, start: int):
        a = acts[:, self.first:].float()
        if state.center:
            a = a - a.mean(-1, keepdim=True)
        a = a.reshape(-1, a.shape[-1]).cpu().numpy()
        token = np.arange(len(a), dtype=np.int64) + start * self.per_seq
        return sparse_encode(state.sae, a, token)

    @torch.no_grad()
    def _fp_pass(self) -> None:
        layers = decoder_layers(self.model)
        self.block_inputs = [[] for _ in range(self.n_layers)]  # [layer][batch]
        self.fp_logprobs = []
        self.tuple_out = False
        handles = []
        for i, block in enumerate(layers):
            def pre(m, args, kwargs, i=i):
                self.block_inputs[i].append((args[0] if args else kwargs["hidden_states"]).detach())
            handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(layers[0].register_forward_hook(
            lambda m, a, out: setattr(self, "tuple_out", isinstance(out, tuple))))
        try:
            with HookCapture(self.model, [s.hook.name for s in self.hooks], stop=False) as cap:
                for s, e in self.batches:
                    logits = self.model(input_ids=self.tokens[s:e].to(self.device), use_cache=False).logits
                    self.fp_logprobs.append(F.log_softmax(logits.float()[:, :-1], -1))
                    for state in self.hooks:
                        state.fp_codes.append(self._codes(state, cap.values[state.hook.name], s))
        finally:
            for h in handles:
                h.remove()
        n = len(self.tokens) * self.per_seq
        self.fp_active = {}
        for state in self.hooks:
            acc = self._accumulate(state, state.fp_codes)
            self.fp_active[state.hook.name] = fractions(survival_frame(acc, n, self.thresholds))["n_active"]

    def _accumulate(self, state: _HookState, codes: list) -> PearsonAccumulator:
        acc = PearsonAccumulator(int(state.sae.cfg.d_sae))
        for (tx, fx, vx), (ty, fy, vy) in zip(state.fp_codes, codes):
            acc.add(tx, fx, vx, ty, fy, vy)
        return acc

    @torch.no_grad()
    def measure(self, groups: list[tuple[int, str]], target: str) -> dict:
        """{hook: fractions (or None where no group can reach it), "kl": mean KL to FP} with
        every listed (layer, part) group at `target` together."""
        start = min(layer for layer, _ in groups)
        linears = [lin for layer, part in groups for lin in group_linears(self.model, layer, part)]
        live = [s for s in self.hooks if any(affects(layer, s.hook) for layer, _ in groups)]
        codes = {s.hook.name: [] for s in live}
        kl, count = 0.0, 0
        feed: dict = {}
        # the hooks are registered before start_at swaps the blocks below `start` out: those
        # blocks' hooks never fire (none of them is live), the live ones sit on blocks that run
        with quantized(linears, target), HookCapture(self.model, [s.hook.name for s in live], stop=False) as cap, \
                start_at(self.model, start, feed, self.tuple_out):
            for b, (s, e) in enumerate(self.batches):
                feed["x"] = self.block_inputs[start][b]
                logits = self.model(input_ids=self.tokens[s:e].to(self.device), use_cache=False).logits
                lp = F.log_softmax(logits.float()[:, :-1], -1)
                lp_fp = self.fp_logprobs[b]
                kl += float((lp_fp.exp() * (lp_fp - lp)).sum())
                count += lp.shape[0] * lp.shape[1]
                for state in live:
                    codes[state.hook.name].append(self._codes(state, cap.values[state.hook.name], s))
        n = len(self.tokens) * self.per_seq
        out = {"kl": kl / count}
        for state in self.hooks:
            if state.hook.name in codes:
                acc = self._accumulate(state, codes[state.hook.name])
                out[state.hook.name] = fractions(survival_frame(acc, n, self.thresholds))
            else:
                out[state.hook.name] = None
        return out


def scan_rows(scanner: Scanner, groups: list[Group], target: str, progress: bool = True) -> pd.DataFrame:
    """One row per (group, hook): the group alone at `target`."""
    rows = []
    low = type_bits(target)
    for i, g in enumerate(groups):
        m = scanner.measure([(g.layer, g.part)], target)
        for state in scanner.hooks:
            h = state.hook.name
            f = m[h]
            rows.append({
                "target": target, "group": g.name, "layer": g.layer, "part": g.part, "n_params": g.n_params,
                "bits": low, "hook": h, "hook_layer": state.hook.layer, "n_active": scanner.fp_active[h],
                "computed": f is not None,
                "survived": 1.0 if f is None else f["frac_survived"],
                "damaged": 0.0 if f is None else f["frac_damaged"],
                "kl": m["kl"],
            })
        if progress:
            worst = min(r["survived"] for r in rows[-len(scanner.hooks):])
            log(f"scan {target}: {i + 1}/{len(groups)} {g.name}: lowest survived {worst:.3f}, KL {m['kl']:.4f}")
    table = pd.DataFrame(rows)
    table["delta_survived"] = table.survived - 1.0  # FP against itself: every active feature survives
    table["delta_damaged"] = table.damaged
    return table


def additivity_rows(scanner: Scanner, table: pd.DataFrame, groups: list[Group], target: str, seed: int = 0,
                    shares=(0.1, 0.25, 0.5, 1.0)) -> pd.DataFrame:
    """Several groups quantized together: the sum of their single-group deltas (predicted)
    against the measured fractions and KL. Subsets: the groups the scan ranks worst, and random
    ones, each holding about `shares` of the weights (1.0: the whole model at `target`)."""
    by_name = {g.name: g for g in groups}
    loss = gains(table, "features")
    worst_first = list(loss.sort_values(ascending=False, kind="stable").index)
    rng = np.random.default_rng(seed)
    total = sum(g.n_params for g in groups)
    subsets = []
    for share in shares:
        for kind, order in (("worst", worst_first), ("random", list(rng.permutation(worst_first)))):
            if share >= 1.0 and kind == "random":
                continue
            chosen, held = [], 0
            for name in order:
                if held >= share * total:
                    break
                chosen.append(name)
                held += by_name[name].n_params
            subsets.append((f"{kind} {share:.0%}" if share < 1.0 else "all", chosen))
    rows = []
    for label, names in subsets:
        m = scanner.measure([(by_name[n].layer, by_name[n].part) for n in names], target)
        sub = table[table.group.isin(names)]
        for state in scanner.hooks:
            h = state.hook.name
            f = m[h]
            here = sub[sub.hook == h]
            rows.append({
                "target": target, "subset": label, "n_groups": len(names), "hook": h,
                "predicted_survived": float(np.clip(1.0 + here.delta_survived.sum(), 0.0, 1.0)),
                # if each group's losses struck features independently: a feature survives all of them
                "predicted_survived_independent": float(np.prod(1.0 + here.delta_survived)),
                "measured_survived": 1.0 if f is None else f["frac_survived"],
                "predicted_damaged": float(np.clip(sub[sub.hook == h].delta_damaged.sum(), 0.0, 1.0)),
                "measured_damaged": 0.0 if f is None else f["frac_damaged"],
                "predicted_kl": float(sub.drop_duplicates("group").kl.sum()),
                "measured_kl": m["kl"],
                "groups": " ".join(names),
            })
        log(f"additivity {target}: {label} ({len(names)} groups): KL predicted "
            f"{rows[-1]['predicted_kl']:.4f}, measured {m['kl']:.4f}")
    return pd.DataFrame(rows)


def write_scan(target: str, run: ModelRun, captures: list[CaptureSettings], thresholds: Thresholds, tokens_path,
               reference, saes: list, scan_path, additivity_path, seed: int = 0) -> None:
    """The `scan` rule: every group alone at `target`, then the additivity subsets."""
    model, _ = load_reference(reference, run, tokenizer=False)
    device = resolve_device(run.device)
    encoders, centers = {}, {}
    for sae_dir, c in zip(saes, captures):
        meta = saved_sae_metadata(sae_dir, key=f"the SAE at {c.hook}")
        encoders[c.hook] = load_encoder(sae_dir, device)
        centers[c.hook] = c.center if c.center is not None else wants_centering(meta)
    tokens = read_tokens(tokens_path, "audit")
    first = captures[0]
    scanner = Scanner(model, encoders, centers, tokens, first.exclude_bos, thresholds, first.batch_size)
    groups = model_groups(model)
    log(f"scan {target}: {len(groups)} groups on {tokens.numel()} tokens, "
        f"FP-active features {', '.join(f'{h} {n}' for h, n in scanner.fp_active.items())}")
    table = scan_rows(scanner, groups, target)
    write_csv(table, scan_path)
    write_csv(additivity_rows(scanner, table, groups, target, seed), additivity_path)
