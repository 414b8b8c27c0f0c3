"""config/README.md, generated: every config key with its type, default and meaning.

Types and meanings come from workflow/schemas/config.schema.yaml, defaults from the dataclasses
in config.py, so the page cannot drift from what the workflow accepts (a test regenerates it
and compares). Regenerate after changing either:

    python -m featureaudit.pipeline.config_docs > config/README.md
"""

from __future__ import annotations

from dataclasses import MISSING, fields

import yaml

from .. import config as c

#: Schema path (in dotted keys, `<name>` for a model's key) -> the dataclass holding its defaults.
SECTIONS = {
    "": c.AuditConfig,
    "corpus": c.CorpusConfig,
    "corpora[]": c.AuditCorpus,
    "models.<name>": c.ModelConfig,
    "models.<name>.sae": c.SaeConfig,
    "models.<name>.sae.train": c.SaeTraining,
    "models.<name>.hooks.<name>": c.SaeConfig,
    "models.<name>.hooks.<name>.train": c.SaeTraining,
    "models.<name>.checkpoints.<name>": c.CheckpointConfig,
    "models.<name>.checkpoints.<name>.mix": None,  # a plain mapping: no defaults
    "quantization": c.QuantizationConfig,
    "pruning": c.PruningConfig,
    "survival": c.Thresholds,
    "evaluation": c.EvaluationConfig,
    "predictability": c.PredictabilityConfig,
    "gate": c.GateConfig,
    "uncertainty": c.UncertaintyConfig,
    "evidence": c.EvidenceConfig,
    "causal": c.CausalConfig,
    "calibration": c.CalibrationConfig,
    "runtime": c.RuntimeConfig,
    "repair": c.RepairConfig,
}

HEADER = """# Configuration

Every key of the workflow's config (`config.yaml` is the embedded default, `config/paper.yaml`
the paper's models). Generated from `workflow/schemas/config.schema.yaml` and the defaults in
`featureaudit/config.py` by `python -m featureaudit.pipeline.config_docs`; do not edit by hand.

A key left out takes its default; a key marked *required* must be given. Unknown keys and wrong
types stop the workflow at start-up with one line naming the key.
"""


def schema() -> dict:
    return yaml.safe_load(c.SCHEMA.read_text())


def section_schema(path: str, root: dict) -> dict:
    node = root
    for part in [p for p in path.split(".") if p]:
        if part.endswith("[]"):  # a list's entries
            node = node["properties"][part[:-2]]["items"]
        else:
            node = node["additionalProperties"] if part == "<name>" else node["properties"][part]
    return node


def _type(prop: dict) -> str:
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    t = prop.get("type", "object")
    types = t if isinstance(t, list) else [t]
    out = " or ".join("null" if x == "null" else x for x in types)
    if "items" in prop:
        out += f" of {prop['items'].get('type', 'value')}"
    return out


def _default(cls, name: str) -> str:
    if cls is None:
        return "-"
    for f in fields(cls):
        if f.name == name:
            if f.default is not MISSING:
                value = f.default
            elif f.default_factory is not MISSING:
                value = f.default_factory()
                if hasattr(value, "__dataclass_fields__"):
                    return "(section)"
            else:
                return "*required*"
            if isinstance(value, tuple):
                value = list(value)
            return f"`{yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}`"
    return "*required*"


def render() -> str:
    root = schema()
    out = [HEADER]
    for path, cls in SECTIONS.items():
        node = section_schema(path, root)
        title = f"`{path}`" if path else "Top level"
        out.append(f"## {title}\n")
        about = root["properties"]["models"] if path == "models.<name>" else node
        if about.get("description") and path:
            out.append(" ".join(about["description"].split()) + "\n")
        out.append("| key | type | default | meaning |\n|---|---|---|---|")
        required = set(node.get("required", []))
        for key, prop in node["properties"].items():
            if prop.get("type") == "object" and "properties" in prop or key == "models":
                continue  # sections get their own table
            default = "*required*" if key in required else _default(cls, key)
            meaning = " ".join(prop.get("description", "").split()).replace("|", "\\|")
            out.append(f"| `{key}` | {_type(prop)} | {default} | {meaning} |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    print(render(), end="")


if __name__ == "__main__":
    main()
