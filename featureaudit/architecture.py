"""Where the transformer blocks of a Hugging Face causal LM live.

Llama/Gemma keep them at `model.model.layers`, GPT-NeoX at `model.gpt_neox.layers`, GPT-2 at
`transformer.h`. Rather than a table per architecture, take the ModuleList whose length is the
config's layer count: every decoder-only model in transformers has exactly one.
"""

from __future__ import annotations

from torch import nn

from .errors import AuditError


def n_layers(model: nn.Module) -> int:
    cfg = model.config
    cfg = getattr(cfg, "text_config", None) or cfg
    return int(cfg.num_hidden_layers)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    n = n_layers(model)
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise AuditError(
        f"could not find the {n} transformer blocks of {type(model).__name__}; "
        "featureaudit supports decoder-only transformers models with a ModuleList of layers"
    )


def block_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """Every nn.Linear inside the transformer blocks (attention and MLP), in model order.

    Embeddings, norms and the LM head sit outside the blocks and are not returned.
    """
    layers = decoder_layers(model)
    out = []
    for i, layer in enumerate(layers):
        for name, module in layer.named_modules():
            if isinstance(module, nn.Linear):
                out.append((f"layers.{i}.{name}", module))
    return out
