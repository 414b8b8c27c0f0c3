"""Draw the workflow's layout: each rule -> its script -> the stage function it calls.

    .venv/bin/python docs/make_layout.py            # writes docs/layout.svg, prints the README table

The edges are Snakemake's own rule graph (`snakemake --rulegraph`, on config.yaml); which
function a script calls is read from the script (its `run_step(snakemake, <function>, ...)`
and the `from featureaudit.<module> import <function>` above it). Needs Graphviz's `dot`.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rule_scripts() -> dict[str, str]:
    """rule -> script, in the order the Snakefile includes the rule files (the method's order)."""
    out = {}
    includes = re.findall(r'^include: "(workflow/rules/\w+\.smk)"', (ROOT / "Snakefile").read_text(), re.M)
    for smk in [ROOT / i for i in includes if not i.endswith("common.smk")]:
        for m in re.finditer(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", smk.read_text(), re.S | re.M):
            script = re.search(r'script:\s*\n\s*"\.\./scripts/(\w+)\.py"', m[2])
            module = re.search(r"-m featureaudit\.([\w.]+)", m[2])  # a shell rule in another environment
            if script:
                out[m[1]] = script[1]
            elif module:
                out[m[1]] = f"-m featureaudit.{module[1]}"
    return out


def stage_of(script: str) -> tuple[str, str]:
    """(module, function) the script hands to run_step (for `-m featureaudit.<module>`, the
    function its `__main__` block calls last)."""
    if script.startswith("-m "):
        module = script.removeprefix("-m featureaudit.")
        tree = ast.parse((ROOT / "featureaudit" / f"{module.replace('.', '/')}.py").read_text())
        main = next(n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test))
        calls = [n.func.id for n in ast.walk(main) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
        return module, [c for c in calls if c not in ("SystemExit", "int", "len")][-1]
    tree = ast.parse((ROOT / "workflow" / "scripts" / f"{script}.py").read_text())
    origin = {a.asname or a.name: node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
              for a in node.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "run_step":
            function = node.args[1].id
            return origin[function].removeprefix("featureaudit."), function
    raise ValueError(f"{script}.py calls no run_step")


def table() -> str:
    rows = ["| rule | script | stage (featureaudit/) |", "|---|---|---|"]
    for rule, script in rule_scripts().items():
        module, function = stage_of(script)
        where = f"python {script} (its own environment)" if script.startswith("-m ") else f"workflow/scripts/{script}.py"
        rows.append(f"| `{rule}` | `{where}` | `{module.replace('.', '/')}.py`: `{function}` |")
    return "\n".join(rows)


def dot_source() -> str:
    graph = subprocess.run([sys.executable, "-m", "snakemake", "--rulegraph", "--configfile", "config.yaml",
                            "--cores", "1"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    names = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', graph, re.M))
    edges = re.findall(r"^\s*(\d+) -> (\d+)$", graph, re.M)
    scripts = rule_scripts()
    lines = ["digraph layout {", '  rankdir=LR; bgcolor=white;',
             '  node [shape=box, style="rounded,filled", fillcolor="#f4f1ea", fontname="DejaVu Sans", fontsize=10];',
             '  edge [color="#888888"];']
    for i, rule in names.items():
        if rule == "all":
            continue
        module, function = stage_of(scripts[rule])
        where = scripts[rule] if scripts[rule].startswith("-m ") else f"scripts/{scripts[rule]}.py"
        label = f"<<b>{rule}</b><br/><font point-size='8'>{where}<br/>{module}.{function}</font>>"
        lines.append(f"  r{i} [label={label}];")
    for a, b in edges:
        if names[b] != "all" and names[a] != "all":
            lines.append(f"  r{a} -> r{b};")
    lines.append("}")
    return "\n".join(lines)


def main() -> None:
    svg = subprocess.run(["dot", "-Tsvg"], input=dot_source(), capture_output=True, text=True, check=True).stdout
    (ROOT / "docs" / "layout.svg").write_text(svg)
    print(table())


if __name__ == "__main__":
    main()
