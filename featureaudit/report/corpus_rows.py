"""Which rows of a summary belong to which audit corpus (pandas only: the figures, the browser
and the gate read it without the summary's own imports)."""

from __future__ import annotations

import pandas as pd


def main_corpus(summary: pd.DataFrame) -> pd.DataFrame:
    """The main corpus's rows (the summary lists them first): what the per-hook figures, the
    browser and the depth figure draw. A summary without a corpus column is one corpus."""
    if "corpus" not in summary.columns or summary.empty:
        return summary
    return summary[summary.corpus == summary.corpus.iloc[0]].reset_index(drop=True)
