#!/usr/bin/env python3
"""Collects BenchmarkDotNet's GitHub-flavoured reports into bench/results/<date>-<sha>-micro.md."""

import glob
import html
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (machine facts and paths)


def main():
    out = sys.argv[1]
    facts = harness.machine_facts("micro")
    parts = [
        f"# LlmGateway micro-benchmarks — {facts['date']} — `{facts['sha']}`{' (uncommitted changes in tree)' if facts['dirty'] else ''}",
        "",
        f"BenchmarkDotNet 0.14.0, `--job short --inProcess`, [MemoryDiagnoser]. {facts['cpu']}, {facts['cores']} cores, "
        f"{facts['os']} / {facts['kernel']}, .NET {facts['dotnet']}. Allocated = managed bytes per call.",
        "",
    ]
    reports = sorted(glob.glob(os.path.join(out, "results", "*-report-github.md")))
    if not reports:
        sys.exit(f"no BenchmarkDotNet reports under {out}/results")
    for path in reports:
        name = os.path.basename(path).replace("-report-github.md", "").rsplit(".", 1)[-1]
        text = open(path).read()
        # Keep the table only; the environment block is summarised above.
        table = "\n".join(line for line in text.splitlines() if line.startswith("|"))
        # BenchmarkDotNet quotes descriptions with spaces and HTML-escapes the quotes.
        table = re.sub(r"'([^'|]+)'", lambda m: m.group(1) + "  ", html.unescape(table))  # keep the column width
        parts += [f"## {name}", "", table, ""]
    report = "\n".join(parts)
    name = f"{facts['day']}-{facts['sha']}-micro.md"
    for target in (name, "latest-micro.md"):
        with open(os.path.join(harness.BENCH, "results", target), "w") as f:
            f.write(report)
    print(report)
    print(f"[bench] written bench/results/{name} and bench/results/latest-micro.md")


if __name__ == "__main__":
    main()
