"""The conventions users of the Snakemake workflow catalog expect, checked by their own tools:
snakefmt formats the workflow, every config key is documented, the documentation is the
schema's (regenerated and compared), and the schema and the typed config agree key for key.
(`snakemake --lint` runs in test_workflow.py, on a real config.)"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields

import jsonschema
import yaml

from conftest import REPO
from featureaudit import config_docs
from featureaudit.config import ModelConfig


def _walk(node: dict, path: str = ""):
    """(dotted key, schema node) for every property of the schema."""
    for key, prop in node.get("properties", {}).items():
        yield f"{path}{key}", prop
        yield from _walk(prop, f"{path}{key}.")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _walk(extra, f"{path}<name>.")


def test_snakefmt_check_passes():
    proc = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "."], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_is_valid_and_every_key_has_a_description():
    schema = config_docs.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    undocumented = [key for key, prop in _walk(schema) if not prop.get("description", "").strip()]
    assert not undocumented, f"schema keys without a description: {undocumented}"


def test_config_readme_is_generated_from_the_schema():
    committed = (REPO / "config" / "README.md").read_text()
    assert committed == config_docs.render(), "config/README.md is stale: python -m featureaudit.config_docs > config/README.md"
    for key, prop in _walk(config_docs.schema()):
        if key == "models":
            assert "## `models.<name>`" in committed
        elif "properties" in prop:  # a section: a heading and a table of its own
            assert f"## `{key}`" in committed, key
        else:
            assert f"| `{key.rsplit('.', 1)[-1]}` |" in committed, key


def test_schema_and_config_dataclasses_agree():
    """Each schema section has exactly the keys of the dataclass that reads it (the model's name
    and nested sections excepted), so a key cannot be accepted and then ignored."""
    schema = config_docs.schema()
    for path, cls in config_docs.SECTIONS.items():
        keys = set(config_docs.section_schema(path, schema)["properties"])
        names = {f.name for f in fields(cls)} - ({"name"} if cls is ModelConfig else set())
        assert keys == names, f"{path or 'top level'}: schema-only {keys - names}, dataclass-only {names - keys}"


def test_shipped_configs_validate():
    from featureaudit.config import load_config

    for path in (REPO / "config.yaml", REPO / "config" / "paper.yaml"):
        load_config(yaml.safe_load(path.read_text()))
