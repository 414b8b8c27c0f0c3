"""Tiny random-weight Hugging Face models built offline, and a TransformerLens reference.

Not a test module: tests import it.

    build_tiny_model(arch, out_dir, seed=0) -> Path
        arch in ARCHS = ("neox", "llama", "gemma2"). Writes a random-weight causal LM (hidden 64,
        4 layers, 4 heads, vocab VOCAB_SIZE) and a byte-level BPE tokenizer trained locally on
        `pydoc_data.topics` into out_dir with `save_pretrained`, so that
        `AutoTokenizer.from_pretrained(out_dir)` and `AutoModelForCausalLM.from_pretrained(out_dir)`
        work offline. Tokens: <pad>=0, <bos>=1, <eos>=2; the tokenizer adds no special tokens
        by itself (featureaudit prepends BOS). Deterministic for a given seed.

    tl_reference(model_dir, hf_model, input_ids, hook_name) -> torch.Tensor
        `run_with_cache(input_ids)[1][hook_name]` of a TransformerLens HookedTransformer built
        from model_dir with hf_model's weights and NO weight processing (fold_ln,
        center_writing_weights, center_unembed, fold_value_biases all False).

    tl_model(model_dir, hf_model, center_writing_weights=False) -> HookedTransformer
        The (cached) model behind tl_reference. Built with the offline recipe
        (loading.get_pretrained_model_config + get_pretrained_state_dict) from a copy of
        model_dir at a neutral temporary path (TL sniffs "llama"/"gemma" in names); Gemma-2,
        which TL only knows by hub name, gets a HookedTransformerConfig mirroring TL's
        google/gemma-2-2b entry with the tiny sizes.

Weights are re-drawn after HF's init (Linear ~ N(0, 1/fan_in), embeddings ~ N(0, 1), norm
weights 1 + 0.1 N(0, 1) (Gemma: 0.1 N(0, 1), since Gemma scales by 1 + w), biases
~ 0.05 N(0, 1)) so activations are O(1) and every parameter matters: a wrong norm
convention or a dropped bias shows up in a comparison.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

ARCHS = ("neox", "llama", "gemma2")
VOCAB_SIZE = 512
HIDDEN = 64
N_LAYERS = 4
N_HEADS = 4
MAX_POS = 256
PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    """A byte-level BPE trained on the pydoc help topics (trained once per process)."""
    from pydoc_data.topics import topics
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((topics[k] for k in sorted(topics)), trainer=trainer)
    return tok.to_str()


def build_tokenizer():
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
    )


def _config(arch: str, tok, hidden: int = HIDDEN):
    HIDDEN = hidden  # noqa: N806 (the widths below follow it)
    common = dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=HIDDEN,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=N_HEADS,
        max_position_embeddings=MAX_POS,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    if arch == "neox":
        from transformers import GPTNeoXConfig

        # The Pythia layout: parallel attention + MLP, partial rotary, LayerNorm with biases.
        return GPTNeoXConfig(
            intermediate_size=4 * HIDDEN,
            rotary_pct=0.25,
            use_parallel_residual=True,
            hidden_act="gelu",
            layer_norm_eps=1e-5,
            attention_bias=True,
            **common,
        )
    if arch == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(
            intermediate_size=2 * HIDDEN,
            num_key_value_heads=2,  # grouped-query attention, as in SmolLM2
            rms_norm_eps=1e-5,
            hidden_act="silu",
            **common,
        )
    if arch == "gemma2":
        from transformers import Gemma2Config

        # Pre/post norms around both sublayers; soft-capping (attn 50, final 30) at defaults.
        # query_pre_attn_scalar = head_dim so the attention scale is 1/sqrt(head_dim), which
        # is what TransformerLens's Gemma-2 configs use (256 = head_dim there).
        return Gemma2Config(
            intermediate_size=2 * HIDDEN,
            num_key_value_heads=2,
            head_dim=HIDDEN // N_HEADS,
            query_pre_attn_scalar=HIDDEN // N_HEADS,
            rms_norm_eps=1e-6,
            hidden_activation="gelu_pytorch_tanh",
            **common,
        )
    raise ValueError(f"unknown arch {arch!r}; use one of {ARCHS}")


@torch.no_grad()
def _randomize(model, seed: int, gemma_norms: bool) -> None:
    g = torch.Generator().manual_seed(seed)

    def randn(shape):
        return torch.randn(shape, generator=g)

    for name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if isinstance(module, torch.nn.Linear) and pname == "weight":
                p.copy_(randn(p.shape) / p.shape[1] ** 0.5)
            elif isinstance(module, torch.nn.Embedding):
                p.copy_(randn(p.shape))
            elif pname == "bias":
                p.copy_(0.05 * randn(p.shape))
            elif p.ndim == 1:  # norm weights (LayerNorm, RMSNorm, GemmaRMSNorm)
                p.copy_((0.0 if gemma_norms else 1.0) + 0.1 * randn(p.shape))
            else:
                raise AssertionError(f"unexpected parameter {name}.{pname} {tuple(p.shape)}")


def build_tiny_model(arch: str, out_dir: Path, seed: int = 0, hidden: int = HIDDEN) -> Path:
    """Write a tiny random `arch` model + tokenizer to out_dir; returns out_dir. `hidden` 256
    gives llama.cpp's K-quants whole super-blocks (at 64 it falls back to other types)."""
    from transformers import AutoModelForCausalLM

    out_dir = Path(out_dir)
    tok = build_tokenizer()
    cfg = _config(arch, tok, hidden)
    if arch == "gemma2":
        cfg._attn_implementation = "eager"  # sdpa cannot soft-cap
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    _randomize(model, seed, gemma_norms=arch == "gemma2")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


# ---------------------------------------------------------------- TransformerLens reference


def _neutral_copy(model_dir: Path) -> Path:
    """TL picks configs by name ("llama"/"gemma" anywhere in the path): copy to a neutral path."""
    for base in (tempfile.gettempdir(), "/tmp"):
        tmp = Path(tempfile.mkdtemp(prefix="tlref-", dir=base))
        if not any(s in str(tmp).lower() for s in ("llama", "gemma")):
            break
        shutil.rmtree(tmp)
    else:
        raise RuntimeError("no temporary directory without 'llama'/'gemma' in its path")
    dst = tmp / "model"
    shutil.copytree(model_dir, dst)
    return dst


def _gemma2_tl_config(hf_cfg):
    """TL only knows Gemma-2 by hub name; this mirrors its google/gemma-2-2b entry."""
    from transformer_lens.config import HookedTransformerConfig

    layer_types = getattr(hf_cfg, "layer_types", None) or [
        "sliding_attention" if i % 2 == 0 else "full_attention" for i in range(hf_cfg.num_hidden_layers)
    ]
    return HookedTransformerConfig(
        d_model=hf_cfg.hidden_size,
        d_head=hf_cfg.head_dim,
        n_heads=hf_cfg.num_attention_heads,
        d_mlp=hf_cfg.intermediate_size,
        n_layers=hf_cfg.num_hidden_layers,
        n_ctx=hf_cfg.max_position_embeddings,
        eps=hf_cfg.rms_norm_eps,
        d_vocab=hf_cfg.vocab_size,
        act_fn=hf_cfg.hidden_activation,
        initializer_range=hf_cfg.initializer_range,
        normalization_type="RMS",
        rotary_base=10000.0,
        rotary_dim=hf_cfg.head_dim,
        positional_embedding_type="rotary",
        use_attn_scale=True,
        attn_scale=float(hf_cfg.query_pre_attn_scalar) ** 0.5,
        n_key_value_heads=hf_cfg.num_key_value_heads,
        window_size=hf_cfg.sliding_window,
        use_local_attn=True,
        attn_types=["local" if t == "sliding_attention" else "global" for t in layer_types],
        attn_scores_soft_cap=hf_cfg.attn_logit_softcapping,
        output_logits_soft_cap=hf_cfg.final_logit_softcapping,
        gated_mlp=True,
        final_rms=True,
        use_normalization_before_and_after=True,
        original_architecture="Gemma2ForCausalLM",
        model_name="tiny-gemma2",
        init_weights=False,
        device="cpu",
        dtype=torch.float32,
    )


_TL_CACHE: dict = {}


def tl_model(model_dir: Path, hf_model, center_writing_weights: bool = False):
    """A HookedTransformer with hf_model's weights, cached per (folder, model, flag).

    No weight processing, except `center_writing_weights=True` (TL's default processing step
    that centres the residual stream of LayerNorm models) when asked for.
    """
    key = (str(Path(model_dir).resolve()), id(hf_model), center_writing_weights)
    if key in _TL_CACHE:
        return _TL_CACHE[key][1]
    from transformer_lens import HookedTransformer, loading
    from transformers import AutoTokenizer

    local = _neutral_copy(Path(model_dir))
    try:
        if type(hf_model).__name__ == "Gemma2ForCausalLM":
            cfg = _gemma2_tl_config(hf_model.config)
        else:
            cfg = loading.get_pretrained_model_config(str(local), device="cpu", fold_ln=False)
        with warnings.catch_warnings():  # "HookedTransformer is deprecated": it is the reference here
            warnings.simplefilter("ignore", DeprecationWarning)
            ht = HookedTransformer(cfg, tokenizer=AutoTokenizer.from_pretrained(local), move_to_device=False)
        state = loading.get_pretrained_state_dict(str(local), cfg, hf_model=hf_model)
        ht.load_and_process_state_dict(
            state,
            fold_ln=False,
            center_writing_weights=center_writing_weights,
            center_unembed=False,
            fold_value_biases=False,
        )
    finally:
        shutil.rmtree(local.parent, ignore_errors=True)
    ht.eval()
    _TL_CACHE[key] = (hf_model, ht)  # keep hf_model alive so its id is not reused
    return ht


@torch.no_grad()
def tl_reference(model_dir: Path, hf_model, input_ids: torch.Tensor, hook_name: str) -> torch.Tensor:
    ht = tl_model(model_dir, hf_model)
    _, cache = ht.run_with_cache(input_ids, names_filter=hook_name)
    return cache[hook_name]


# ---------------------------------------------------------------- a tiny GGUF reference


def _permute_rows(w, n_head: int):
    """llama.cpp's q/k row order (convert_hf_to_gguf.py `LlamaModel.permute`); transformers'
    GGUF loader undoes it."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(hf_dir: Path, out_file: Path) -> Path:
    """The tiny Llama of `hf_dir` as an F32 GGUF file, written with gguf-py's GGUFWriter the way
    llama.cpp's converter lays it out (names, q/k row order, BPE tokenizer metadata), so that
    transformers loads it back to the same weights and tokenizer."""
    import json

    import gguf
    import numpy as np
    from transformers import AutoModelForCausalLM

    hf_dir, out_file = Path(hf_dir), Path(out_file)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    c = model.config
    assert type(model).__name__ == "LlamaForCausalLM", "write_tiny_gguf writes Llama models"
    tok = json.loads((hf_dir / "tokenizer.json").read_text())
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    special = {t["content"] for t in tok["added_tokens"]}

    w = gguf.GGUFWriter(str(out_file), "llama")
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(float(getattr(c, "rope_theta", None) or c.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(c.vocab_size)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list([t for t, _ in vocab])
    w.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t, _ in vocab])
    w.add_token_merges(merges)
    w.add_bos_token_id(c.bos_token_id)
    w.add_eos_token_id(c.eos_token_id)
    w.add_pad_token_id(c.pad_token_id)
    w.add_add_bos_token(False)

    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    names = {"self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate",
             "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
             "post_attention_layernorm": "ffn_norm"}
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_q.weight", _permute_rows(sd[p + "self_attn.q_proj.weight"], c.num_attention_heads))
        w.add_tensor(f"blk.{i}.attn_k.weight", _permute_rows(sd[p + "self_attn.k_proj.weight"], c.num_key_value_heads))
        for hf, g in names.items():
            w.add_tensor(f"blk.{i}.{g}.weight", np.ascontiguousarray(sd[p + hf + ".weight"]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out_file


def assert_codes_equal_saelens(model_dir: Path, hf_model, ids: torch.Tensor, codes_path: Path, sae_dir: Path,
                               hook_name: str) -> None:
    """A codes file of the workflow (BOS positions left out) equals SAELens's encode of
    TransformerLens's activations at the hook on the same token ids, TopK ties aside."""
    import numpy as np
    import pyarrow.parquet as pq
    from sae_lens import SAE

    T = ids.shape[1]
    row = {s * T + p: i for i, (s, p) in enumerate((s, p) for s in range(len(ids)) for p in range(1, T))}
    acts = tl_reference(model_dir, hf_model, ids, hook_name)[:, 1:]
    acts = acts.reshape(-1, acts.shape[-1])
    with torch.no_grad():
        expected = SAE.load_from_disk(str(sae_dir)).encode(acts).numpy()
    codes = pq.read_table(codes_path).to_pandas()
    got = np.zeros_like(expected)
    got[[row[x] for x in codes.token], codes.feature] = codes.value
    mismatch = ~np.isclose(got, expected, atol=1e-4, rtol=1e-3)  # TopK ties may flip a handful
    assert mismatch.sum() <= 0.001 * got.size, (hook_name, int(mismatch.sum()))
