"""Where a workflow run's time went, from its Snakemake log: wall time, and job-seconds per rule
(each job from its start line to its `Finished jobid` line; jobs overlap, so the sum exceeds
the wall time). Optionally the variant jobs split by corpus (`results/<model>/corpora/<label>/`).

    .venv/bin/python benchmarks/job_seconds.py .snakemake/log/<run>.snakemake.log [...]

One table per log; timestamps are Snakemake's own (whole seconds).
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
START = re.compile(r"^(?:local)?rule (\w+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
CORPUS = re.compile(r"corpus_dir=/corpora/(\w+)")
DONE = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")


def parse(path: Path) -> tuple[dict, float]:
    """(rule or rule@corpus -> [count, seconds], wall seconds from the first to the last stamp)."""
    stamp = first = None
    started: dict[str, tuple[str, datetime]] = {}
    pending = current = None
    totals: dict[str, list] = defaultdict(lambda: [0, 0.0])
    for line in path.read_text(errors="replace").splitlines():
        m = STAMP.match(line)
        if m:
            stamp = datetime.strptime(m[1], "%a %b %d %H:%M:%S %Y")
            first = first or stamp
            continue
        m = START.match(line)
        if m:
            pending, current = (m[1], stamp), None
            continue
        m = JOBID.match(line)
        if m and pending:
            started[m[1]], current, pending = pending, m[1], None
            continue
        if current and (m := CORPUS.search(line)):  # the wildcards line follows the jobid line
            rule, t0 = started[current]
            started[current], current = (f"{rule}@{m[1]}", t0), None
            continue
        m = DONE.match(line)
        if m and m[1] in started:
            rule, t0 = started.pop(m[1])
            totals[rule][0] += 1
            totals[rule][1] += (stamp - t0).total_seconds()
    return dict(totals), (stamp - first).total_seconds() if first else 0.0


def main() -> None:
    for arg in sys.argv[1:]:
        totals, wall = parse(Path(arg))
        print(f"{arg}: wall {int(wall // 60)} min {int(wall % 60):02d} s, "
              f"{sum(c for c, _ in totals.values())} jobs, {sum(s for _, s in totals.values()):.0f} job-seconds")
        for rule, (count, seconds) in sorted(totals.items(), key=lambda kv: -kv[1][1]):
            print(f"  {rule:32s} {count:4d} jobs {seconds:8.0f} s  ({seconds / count:6.1f} s each)")


if __name__ == "__main__":
    main()
