"""The feature browser and the Snakemake report in a real headless browser (Chromium), on the
tiny models the workflow audits once per session (arch_project)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from transformers import AutoTokenizer

from headless import load, spans

MODELS = ("neox", "gemma2")
#: Where each arch_project model's SAE reads (its browser and tables sit under results/<model>/<hook>/).
HOOKS = {"neox": "blocks.1.hook_resid_post", "gemma2": "blocks.2.hook_resid_post"}


def shown(text: str) -> str:
    return text.replace("\n", "↵").replace("\t", "→")


def test_the_harness_sees_console_errors(tmp_path):
    """The check below can fail: an uncaught exception is a console message."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>null.foo();</script></body></html>")
    _, console = load(page.as_uri())
    assert any("Uncaught TypeError" in m for m in console), console


@pytest.mark.parametrize("model", MODELS)
def test_browser_lists_every_fp_active_feature_and_opens_its_card(arch_project, tiny_models, model):
    results = arch_project.workdir / "results" / model
    hook = HOOKS[model]
    page = results / hook / "browser.html"
    fp = pd.read_parquet(results / hook / "survival" / "fp.parquet")
    active = set(fp.feature[fp.status != "inactive"])

    dom, console = load(page.as_uri() + "#rows=100000")
    assert console == []
    rows = re.findall(r"<tr data-i=\"\d+\"[^>]*><td>(\d+)</td>", dom)
    assert len(rows) == len(active) and set(map(int, rows)) == active

    # the card of the feature with the largest FP activation anywhere: its top context is
    # centred on that token, found here by brute force over the FP codes and tokens.parquet
    codes = pd.read_parquet(results / "codes" / "fp" / f"{hook}.parquet")
    codes = codes[codes.feature.isin(active)]
    top = codes.loc[codes.value.idxmax()]
    feature, token = int(top.feature), int(top.token)
    tokens = pd.read_parquet(results / "tokens.parquet")
    audit = np.stack(tokens[tokens.split == "audit"].input_ids.to_numpy())
    T = audit.shape[1]
    tok = AutoTokenizer.from_pretrained(tiny_models[model])
    want_center = shown(tok.decode([int(audit[token // T, token % T])]))

    dom, console = load(page.as_uri() + f"#f={feature}")
    assert console == []
    assert f"Feature {feature}</h1>" in dom
    contexts = spans(dom, "ctx")
    n_ctx = int(pd.read_parquet(results / hook / "contexts.parquet").query("feature == @feature").shape[0])
    assert len(contexts) == n_ctx > 0
    first = contexts[0]
    labels = [i for i, (cls, _) in enumerate(first) if cls == "lab"]
    assert [first[i][1] for i in labels][:2] == ["FP", "rtn-w4"]
    fp_line = first[labels[0] + 1: labels[1]]
    centers = [text for cls, text in fp_line if "center" in cls.split()]
    assert centers == [want_center]
    # the window is the audit text around that token
    window = "".join(text for _, text in fp_line)
    pos = token % T
    assert shown(tok.decode(audit[token // T, pos:pos + 1])) in window
    # every variant is shown on the same tokens
    for a, b in zip(labels, labels[1:] + [len(first)]):
        assert [t for _, t in first[a + 1:b]] == [t for _, t in fp_line]


def test_snakemake_report_opens_without_console_errors(arch_project, tmp_path):
    html = tmp_path / "report.html"
    arch_project.snakemake("--report", str(html))
    dom, console = load(html.as_uri())
    assert not [m for m in console if "rror" in m], console
    m = re.search(r"var results = (\{.*?\});\n", html.read_text(), re.S)
    entries = json.loads(m.group(1))
    browsers = [p for p in entries if Path(p).name == "browser.html"]
    assert len(browsers) == len(MODELS)
    for p in browsers:
        assert entries[p]["caption"] and "survived_r" not in entries[p]["caption"]  # rendered, not the template
