"""Deployment gate: exit 0 if a variant keeps enough SAE features (and every watched feature),
1 if not, 2 on bad input (one line on stderr, naming the fix).

    featureaudit-gate results/smollm2/summary.csv --variant rtn-w6
    featureaudit-gate results/smollm2/summary.csv --variant rtn-w6 --watchlist safety_features.txt

Thresholds: a flag if given, else the `gate:` block of --config (default: ./config.yaml when
it exists), else 0.5 survived / 0.2 damaged. Every hook of the summary is checked (--hook names
some). A watch-list is a text file of feature ids, one per line, or a hook and an id where the
audit has several hooks (`#` starts a comment); each must be FP-active and survive in the variant,
read from the hook's survival table beside the summary (<hook>/survival/<variant>.parquet). One
line per failed requirement.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd

from ..config import GateConfig
from ..errors import AuditError
from ..inputs.watchlist import check_hooks, check_ids, ids_at, read_watchlist
from ..integrity import sidecar, verify_file
from ..paths import CORPORA_FOLDER

REQUIRED = ("variant", "n_active", "frac_survived", "frac_damaged", "perplexity")


def _row(summary: pd.DataFrame, variant: str, hook: str | None = None, corpus: str | None = None) -> pd.Series:
    missing = [c for c in REQUIRED if c not in summary.columns]
    if missing:
        raise KeyError(f"the summary has no column {', '.join(missing)}; is it a featureaudit summary.csv?")
    rows = summary[summary.variant == variant]
    if rows.empty:
        raise KeyError(f"variant {variant!r} is not in the summary; it has {', '.join(dict.fromkeys(summary.variant))}")
    if hook is not None:
        rows = rows[rows.hook == hook]
    if corpus is not None:
        rows = rows[rows.corpus == corpus]
        if rows.empty:
            raise KeyError(f"variant {variant!r} was not audited on corpus {corpus!r}; add it to that corpus's variants")
    return rows.iloc[0]


def summary_corpora(summary: pd.DataFrame, wanted: list[str] | None, variant: str) -> list[str | None]:
    """The corpora to check: those asked for, else every corpus the variant was audited on
    (the worst of them decides); [None] for a summary of one corpus without a corpus column."""
    if "corpus" not in summary.columns:
        if wanted:
            raise KeyError("this summary has no corpus column (one corpus); drop --corpus")
        return [None]
    corpora = list(dict.fromkeys(summary.corpus))
    unknown = [c for c in wanted or [] if c not in corpora]
    if unknown:
        raise KeyError(f"corpus {unknown[0]!r} is not in the summary; it has {', '.join(corpora)}")
    if wanted:
        return list(wanted)
    audited = set(summary.corpus[summary.variant == variant])
    return [c for c in corpora if c in audited] or corpora


def summary_hooks(summary: pd.DataFrame, wanted: list[str] | None) -> list[str | None]:
    """The hooks to check: those asked for, else every hook of the summary ([None] for a
    summary of one hook written before summaries had a hook column)."""
    if "hook" not in summary.columns:
        if wanted:
            raise KeyError("this summary has no hook column (one hook); drop --hook")
        return [None]
    hooks = list(dict.fromkeys(summary.hook))
    unknown = [h for h in wanted or [] if h not in hooks]
    if unknown:
        raise KeyError(f"hook {unknown[0]!r} is not in the summary; it has {', '.join(hooks)}")
    return list(wanted) if wanted else hooks


def _ci(row, name: str) -> str:
    lo, hi = row.get(f"{name}_lo"), row.get(f"{name}_hi")
    try:
        return f" [{float(lo):.1%}, {float(hi):.1%}]" if math.isfinite(float(lo)) and math.isfinite(float(hi)) else ""
    except (TypeError, ValueError):
        return ""


def fraction_failures(row, variant: str, gate: GateConfig) -> tuple[list[str], str]:
    survived, damaged = float(row.frac_survived), float(row.frac_damaged)
    n = int(row.n_active)
    failures = []
    if math.isnan(survived) or survived < gate.min_survived:
        failures.append(f"FAIL {variant}: {survived:.1%}{_ci(row, 'frac_survived')} of {n} FP-active features survived "
                        f"(need >= {gate.min_survived:.0%})")
    if math.isnan(damaged) or damaged > gate.max_damaged:
        failures.append(f"FAIL {variant}: {damaged:.1%}{_ci(row, 'frac_damaged')} of {n} FP-active features damaged "
                        f"(allowed <= {gate.max_damaged:.0%})")
    passed = (f"PASS {variant}: {survived:.1%}{_ci(row, 'frac_survived')} of {n} FP-active features survived "
              f"(need >= {gate.min_survived:.0%}), {damaged:.1%} damaged (allowed <= {gate.max_damaged:.0%}); "
              f"perplexity {float(row.perplexity):.3f}")
    return failures, passed


def watchlist_failures(survival: pd.DataFrame, ids: list[int], variant: str, path) -> list[str]:
    check_ids(ids, len(survival), path)
    table = survival.set_index("feature")
    failures = []
    for i in ids:
        row = table.loc[i]
        if row.status == "inactive":
            failures.append(f"FAIL {variant}: watched feature {i} is not FP-active ({int(row.fp_active_tokens)} audit tokens): "
                            "its survival cannot be audited; audit more tokens or drop it from the watch-list")
        elif row.status != "survived":
            r = "never fires" if math.isnan(row.r) else f"r = {row.r:.3f}"
            failures.append(f"FAIL {variant}: watched feature {i} is {row.status} ({r})")
    return failures


def gate_config(config_path, explicit: bool) -> tuple[GateConfig, str]:
    """The config's gate block, or the defaults when there is no config file (not asked for)."""
    path = Path(config_path)
    if not path.exists():
        if explicit:
            raise AuditError(f"--config {path} does not exist; name the config.yaml the audit ran with")
        return GateConfig(), "defaults"
    import yaml

    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return GateConfig(**(raw.get("gate") or {})), str(path)
    except (yaml.YAMLError, TypeError) as e:
        raise AuditError(f"{path}: no valid gate block ({str(e).splitlines()[0]}); fix the config") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("summary", help="results/<model>/summary.csv")
    ap.add_argument("--variant", required=True, help="e.g. rtn-w6")
    ap.add_argument("--config", help="the audit's config.yaml, whose gate: block gives the thresholds (default ./config.yaml)")
    ap.add_argument("--min-survived", type=float, help="fraction of FP-active features that must survive")
    ap.add_argument("--max-damaged", type=float, help="fraction that may be damaged")
    ap.add_argument("--watchlist", help="file of feature ids (one per line, or '<hook> <id>') that must each "
                                        "survive (default: the config's gate.watchlist)")
    ap.add_argument("--hook", action="append", help="check this hook only (repeat for several; default: every "
                                                    "hook of the summary)")
    ap.add_argument("--corpus", action="append", help="check this corpus only (repeat for several; default: every "
                                                      "corpus the variant was audited on, the worst deciding)")
    ap.add_argument("--way-forward", action="store_true",
                    help="on a failure, name the tensor groups whose upgrade the sensitivity scan says helps most, "
                         "and the bits it costs (needs repair: targets in the audit's config)")
    ap.add_argument("--scan", help="the scan's target type to read (default: the first scanned)")
    ap.add_argument("--high", default="q8_0", help="the type the way forward upgrades groups to (default q8_0)")
    ap.add_argument("--write-recipe", metavar="FILE",
                    help="with --way-forward: write it as a llama-quantize --tensor-type-file; audit it as "
                         "{llama_cpp: <TARGET>, recipe: FILE}")
    args = ap.parse_args(argv)
    try:
        gate, _ = gate_config(args.config or "config.yaml", explicit=args.config is not None)
        if args.min_survived is not None:
            gate = replace(gate, min_survived=args.min_survived)
        if args.max_damaged is not None:
            gate = replace(gate, max_damaged=args.max_damaged)
        if sidecar(args.summary).exists():  # the workflow's own summary: check it was not damaged
            verify_file(args.summary)
        summary = pd.read_csv(args.summary)
        hooks = summary_hooks(summary, args.hook)
        watchlist = args.watchlist or gate.watchlist
        entries = read_watchlist(watchlist) if watchlist else []
        audited = summary_hooks(summary, None)  # every hook of the audit: a bare id is ambiguous among several
        check_hooks(entries, audited, watchlist)
        corpora = summary_corpora(summary, args.corpus, args.variant)
        several = len(set(summary.corpus)) > 1 if "corpus" in summary.columns else False
        main_corpus = summary.corpus.iloc[0] if "corpus" in summary.columns else None
        failures, passes = [], []
        for corpus, hook in ((c, h) for c in corpora for h in hooks):
            label = f"{args.variant} at {hook}" if len(audited) > 1 else args.variant
            label += f" on {corpus}" if several else ""
            more, passed = fraction_failures(_row(summary, args.variant, hook, corpus), label, gate)
            failures += more
            if entries:
                ids = ids_at(entries, hook)
                root = Path(args.summary).parent
                if corpus is not None and corpus != main_corpus:
                    root = root / CORPORA_FOLDER / corpus
                folder = root if hook is None else root / hook
                table = folder / "survival" / f"{args.variant}.parquet"
                if not table.exists():
                    raise AuditError(f"{table} does not exist: a watch-list needs the survival tables beside the summary")
                from ..io import read_table

                failures += watchlist_failures(read_table(table).to_pandas(), ids, label, watchlist)
                passed += f"; all {len(ids)} watched features survived"
            passes.append(passed)
    except (AuditError, OSError, KeyError, ValueError) as e:  # ValueError: pandas' ParserError, EmptyDataError; non-numbers
        print(f"featureaudit-gate: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    print("\n".join(failures or passes))
    if failures and (args.way_forward or args.write_recipe):
        try:
            print(way_forward_lines(args, summary, corpora, gate))
        except (AuditError, OSError, KeyError, ValueError) as e:
            print(f"featureaudit-gate: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
            return 2
    return 1 if failures else 0


def way_forward_lines(args, summary: pd.DataFrame, corpora, gate: GateConfig) -> str:
    """The way forward for a failed variant, from the scan beside the summary (main corpus)."""
    from ..repair.way_forward import scan_tables, target_survival, way_forward, write_recipe_file

    tables = scan_tables(args.summary)
    if args.scan:
        tables = [t for t in tables if t.parent.name == args.scan]
    if not tables:
        raise AuditError(f"no sensitivity scan{' of ' + args.scan if args.scan else ''} beside {args.summary} "
                         "(repair/<target>/scan.csv); add repair: {targets: [q4_0]} to the config and rerun")
    scan = pd.read_csv(tables[0])
    main_rows = summary[summary.corpus == corpora[0]] if "corpus" in summary.columns and corpora[0] else summary
    plan = way_forward(scan, target_survival(tables[0], main_rows), gate.min_survived, args.high)
    lines = [plan.line(args.variant, gate.min_survived)]
    if args.write_recipe:
        reference = Path(args.summary).parent / "llama_cpp" / "reference.f32.gguf"
        if not reference.exists():
            raise AuditError(f"{reference} does not exist: a recipe names the reference GGUF's tensors (runs with "
                             "llama.cpp make it)")
        write_recipe_file(scan, plan, reference, args.write_recipe)
        lines.append(f"wrote {args.write_recipe}: audit it as {{llama_cpp: {plan.target.upper()}, recipe: "
                     f"{args.write_recipe}}}, or make it with llama-quantize --pure --tensor-type-file "
                     f"{args.write_recipe} <f32.gguf> <out.gguf> {plan.target.upper()}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
