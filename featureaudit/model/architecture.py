"""Where the transformer blocks of a Hugging Face causal LM live, and how wide they are.

Llama/Gemma keep the blocks at `model.model.layers`, GPT-NeoX at `model.gpt_neox.layers`,
GPT-2 at `transformer.h`. Rather than a table per architecture, take the ModuleList whose
length is the config's layer count: every decoder-only model in transformers has exactly one.

The shape helpers read a transformers config object or its dict (config.json), so the start-up
checks use them without importing torch; torch is imported by the functions that need it.
"""

from __future__ import annotations

from typing import Any

from ..errors import AuditError


def text_config(config: Any) -> Any:
    """The language model's part of a config: multimodal configs nest it under text_config."""
    inner = config.get("text_config") if isinstance(config, dict) else getattr(config, "text_config", None)
    return inner or config


def config_value(config: Any, key: str, default: Any = None) -> Any:
    cfg = text_config(config)
    return cfg.get(key, default) if isinstance(cfg, dict) else getattr(cfg, key, default)


def n_layers(config: Any) -> int:
    """Number of transformer blocks, from a config (object or dict) or a model."""
    return int(config_value(getattr(config, "config", config), "num_hidden_layers"))


def hidden_size(config: Any) -> int:
    """Residual-stream width, from a config (object or dict) or a model."""
    return int(config_value(getattr(config, "config", config), "hidden_size"))


def part_input_widths(config: Any) -> dict[str, set[int]]:
    """Input widths of the block linears by part: attention reads the residual stream (q, k, v)
    and the heads (output projection); the MLP reads the residual stream (gate, up) and its
    own width (down)."""
    d = hidden_size(config)
    heads = int(config_value(config, "num_attention_heads") or 1)
    head_dim = int(config_value(config, "head_dim") or d // heads)
    ffn = int(config_value(config, "intermediate_size") or 4 * d)
    return {"attn": {d, heads * head_dim}, "mlp": {d, ffn}}


def linear_input_widths(config: Any) -> set[int]:
    """Input widths of all the block linears."""
    return set().union(*part_input_widths(config).values())


def decoder_layers(model):
    from torch import nn

    n = n_layers(model)
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise AuditError(
        f"could not find the {n} transformer blocks of {type(model).__name__}; "
        "featureaudit supports decoder-only transformers models with a ModuleList of layers"
    )


def block_linears(model) -> list:
    """(name, nn.Linear) for every linear inside the transformer blocks (attention and MLP), in
    model order. Embeddings, norms and the LM head sit outside the blocks and are not returned."""
    from torch import nn

    out = []
    for i, layer in enumerate(decoder_layers(model)):
        for name, module in layer.named_modules():
            if isinstance(module, nn.Linear):
                out.append((f"layers.{i}.{name}", module))
    return out
