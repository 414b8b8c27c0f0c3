"""The deployment gate CLI on summary.csv files written here: exit 0 pass, 1 fail, 2 bad input."""

from __future__ import annotations


import pandas as pd
import pyarrow as pa
import pytest

from featureaudit.io import write_table
from featureaudit.report.gate import main

ROWS = [
    # variant, n_active, frac_survived, frac_blurred, frac_damaged, perplexity
    ("fp", 100, 1.0, 0.0, 0.0, 20.0),
    ("rtn-w8", 100, 0.95, 0.04, 0.01, 20.1),
    ("rtn-w4", 100, 0.30, 0.30, 0.40, 35.0),
    ("rtn-w6", 100, 0.60, 0.25, 0.15, 21.0),
    ("mag-0.5", 100, float("nan"), float("nan"), float("nan"), 50.0),
]


@pytest.fixture
def summary(tmp_path):
    df = pd.DataFrame(ROWS, columns=["variant", "n_active", "frac_survived", "frac_blurred", "frac_damaged", "perplexity"])
    df["kind"] = ["fp", "rtn", "rtn", "rtn", "magnitude"]
    path = tmp_path / "summary.csv"
    df.to_csv(path, index=False)
    return path


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_pass(summary, capsys):
    rc, out, err = run(capsys, summary, "--variant", "rtn-w8")
    assert rc == 0
    assert out.startswith("PASS") and "FAIL" not in out
    assert "rtn-w8" in out and "95.0%" in out and "100" in out


def test_fail_on_survival(summary, capsys):
    rc, out, _ = run(capsys, summary, "--variant", "rtn-w4")
    assert rc == 1
    assert out.startswith("FAIL") and "rtn-w4" in out and "30.0%" in out


def test_fail_on_damage_alone(summary, capsys):
    # 60% survived passes --min-survived 0.5, but 15% damaged exceeds --max-damaged 0.1.
    assert run(capsys, summary, "--variant", "rtn-w6", "--max-damaged", "0.2")[0] == 0
    rc, out, _ = run(capsys, summary, "--variant", "rtn-w6", "--max-damaged", "0.1")
    assert rc == 1 and out.startswith("FAIL")


@pytest.mark.parametrize("min_survived,expected", [(0.59, 0), (0.60, 0), (0.61, 1)])
def test_threshold_boundary(summary, capsys, min_survived, expected):
    rc, out, _ = run(capsys, summary, "--variant", "rtn-w6", "--min-survived", min_survived)
    assert rc == expected
    assert out.startswith("PASS" if expected == 0 else "FAIL")


def test_nan_survival_fails(summary, capsys):
    rc, out, _ = run(capsys, summary, "--variant", "mag-0.5", "--min-survived", "0", "--max-damaged", "1")
    assert rc == 1 and out.startswith("FAIL")


def test_defaults_are_half_and_a_fifth(summary, capsys):
    assert run(capsys, summary, "--variant", "rtn-w6")[0] == 0  # 0.60 >= 0.5, 0.15 <= 0.2
    assert run(capsys, summary, "--variant", "rtn-w4")[0] == 1


def test_unknown_variant_is_bad_input(summary, capsys):
    rc, out, err = run(capsys, summary, "--variant", "rtn-w3")
    assert rc == 2
    assert out == ""
    assert "rtn-w3" in err and "rtn-w8" in err  # names what the summary has
    assert "PASS" not in err and "FAIL" not in err


def test_missing_file_is_bad_input(tmp_path, capsys):
    rc, out, err = run(capsys, tmp_path / "nope.csv", "--variant", "rtn-w8")
    assert rc == 2 and out == "" and "nope.csv" in err


def test_empty_file_is_bad_input(tmp_path, capsys):
    path = tmp_path / "summary.csv"
    path.write_text("")
    rc, out, err = run(capsys, path, "--variant", "rtn-w8")
    assert rc == 2 and out == "" and err.startswith("featureaudit-gate:")


def test_missing_column_is_bad_input(tmp_path, capsys):
    path = tmp_path / "summary.csv"
    pd.DataFrame({"variant": ["rtn-w8"], "n_active": [10], "frac_survived": [0.9], "perplexity": [1.0]}).to_csv(path, index=False)
    rc, out, err = run(capsys, path, "--variant", "rtn-w8")
    assert rc == 2 and out == ""
    assert "frac_damaged" in err


def test_non_numeric_fraction_is_bad_input(tmp_path, capsys):
    path = tmp_path / "summary.csv"
    pd.DataFrame({"variant": ["rtn-w8"], "n_active": [10], "frac_survived": ["lots"], "frac_damaged": [0.0],
                  "perplexity": [1.0]}).to_csv(path, index=False)
    rc, out, err = run(capsys, path, "--variant", "rtn-w8")
    assert rc == 2 and out == "" and err.startswith("featureaudit-gate:")


def test_missing_variant_flag_is_usage_error(summary, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(summary)])
    assert e.value.code == 2


# --------------------------------------------------------------------------- watch-list, config


@pytest.fixture
def audit(tmp_path, summary):
    """A summary with the survival table of rtn-w8 beside it, as the workflow lays them out."""
    folder = summary.parent / "survival"
    folder.mkdir()
    table = pd.DataFrame({"feature": range(6), "fp_active_tokens": [50, 40, 30, 2, 60, 70],
                          "r": [0.99, 0.7, 0.2, float("nan"), 0.95, float("nan")],
                          "status": ["survived", "blurred", "damaged", "inactive", "survived", "damaged"]})
    write_table(pa.Table.from_pandas(table, preserve_index=False), folder / "rtn-w8.parquet")  # sealed, as the rule writes it
    return summary


def watch(tmp_path, text):
    path = tmp_path / "watch.txt"
    path.write_text(text)
    return path


def test_watchlist_of_survivors_passes(audit, tmp_path, capsys):
    rc, out, _ = run(capsys, audit, "--variant", "rtn-w8", "--watchlist", watch(tmp_path, "0\n# steering\n4  # refusal\n"))
    assert rc == 0 and out.startswith("PASS") and "all 2 watched features survived" in out


def test_each_broken_watched_feature_is_one_line(audit, tmp_path, capsys):
    rc, out, _ = run(capsys, audit, "--variant", "rtn-w8", "--watchlist", watch(tmp_path, "0\n1\n2\n3\n5\n"))
    lines = out.strip().splitlines()
    assert rc == 1 and len(lines) == 4 and all(line.startswith("FAIL rtn-w8") for line in lines)
    assert "feature 1 is blurred (r = 0.700)" in lines[0]
    assert "feature 2 is damaged (r = 0.200)" in lines[1]
    assert "feature 3 is not FP-active" in lines[2]
    assert "feature 5 is damaged (never fires)" in lines[3]


def test_fraction_and_watchlist_failures_are_all_listed(audit, tmp_path, capsys):
    rc, out, _ = run(capsys, audit, "--variant", "rtn-w8", "--min-survived", "0.99", "--watchlist", watch(tmp_path, "1\n"))
    assert rc == 1 and len(out.strip().splitlines()) == 2


@pytest.mark.parametrize("text,needle", [("0\n6\n", "feature 6 is out of range"), ("-1\n", "feature -1 is out of range"),
                                         ("x1\n", "'x1' is not a feature id"), ("# none\n", "lists no feature ids")])
def test_bad_watchlist_is_one_line_and_exit_2(audit, tmp_path, capsys, text, needle):
    rc, out, err = run(capsys, audit, "--variant", "rtn-w8", "--watchlist", watch(tmp_path, text))
    assert rc == 2 and out == "" and needle in err and len(err.strip().splitlines()) == 1


def test_missing_watchlist_or_table_is_exit_2(audit, tmp_path, capsys):
    rc, out, err = run(capsys, audit, "--variant", "rtn-w8", "--watchlist", tmp_path / "nope.txt")
    assert rc == 2 and "nope.txt" in err and len(err.strip().splitlines()) == 1
    rc, out, err = run(capsys, audit, "--variant", "rtn-w4", "--watchlist", watch(tmp_path, "0\n"))
    assert rc == 2 and "rtn-w4.parquet" in err


def test_thresholds_come_from_the_config_then_flags(summary, tmp_path, capsys):
    cfg = tmp_path / "audit.yaml"
    cfg.write_text("gate:\n  min_survived: 0.9\n  max_damaged: 0.05\n")
    assert run(capsys, summary, "--variant", "rtn-w6", "--config", cfg)[0] == 1  # 0.60 < 0.9
    assert run(capsys, summary, "--variant", "rtn-w8", "--config", cfg)[0] == 0  # 0.95, 0.01
    assert run(capsys, summary, "--variant", "rtn-w6", "--config", cfg, "--min-survived", "0.5",
               "--max-damaged", "0.2")[0] == 0
    rc, out, err = run(capsys, summary, "--variant", "rtn-w6", "--config", tmp_path / "missing.yaml")
    assert rc == 2 and "missing.yaml" in err
