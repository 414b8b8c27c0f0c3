"""The summary's verdict: masked damage is perplexity within tolerance while features fail the gate."""

from __future__ import annotations

import math

import pytest

from featureaudit.config import GateConfig
from featureaudit.report.summary import verdict

GATE = GateConfig(min_survived=0.5, max_damaged=0.2, perplexity_tolerance=0.02)


def row(variant="rtn-w6", survived=0.9, damaged=0.0, change=0.01, lo=math.nan, hi=math.nan):
    return {"variant": variant, "frac_survived": survived, "frac_damaged": damaged, "perplexity_change": change,
            "frac_survived_lo": lo, "frac_survived_hi": hi}


@pytest.mark.parametrize("survived,damaged,change,masked,head", [
    (0.9, 0.0, 0.01, False, "PASS"),           # both fine
    (0.4, 0.0, 0.01, True, "MASKED DAMAGE"),   # perplexity fine, features not
    (0.4, 0.0, -0.015, True, "MASKED DAMAGE"),  # perplexity *improved* (Gemma-2 INT7 in the paper)
    (0.9, 0.3, 0.0, True, "MASKED DAMAGE"),    # too many damaged
    (0.4, 0.0, 0.05, False, "FAIL"),           # perplexity shows it too
    (0.9, 0.0, 0.30, False, "PASS"),           # features fine, perplexity not: not the gate's business
    (0.5, 0.2, 0.02, False, "PASS"),           # every boundary inclusive
])
def test_masked_damage(survived, damaged, change, masked, head):
    got, line = verdict(row(survived=survived, damaged=damaged, change=change), GATE)
    assert got is masked and line.startswith(head)


def test_fp_is_the_reference_and_intervals_are_reported():
    assert verdict(row(variant="fp"), GATE) == (False, "reference")
    _, line = verdict(row(survived=0.52, lo=0.47, hi=0.56), GATE)
    assert "[47.0 %, 56.0 %]" in line and "crosses the 50.0 % gate" in line
    _, line = verdict(row(survived=0.7, lo=0.65, hi=0.75), GATE)
    assert "crosses" not in line
