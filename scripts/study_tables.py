"""Write the studies' verdict tables into README.md and docs/studies/README.md from the committed
reports, so that no verdict or time is copied by hand.

    .venv/bin/python scripts/study_tables.py [--check]

For every study (``bnlab.lab.experiments.STUDIES``, ``bnlab list``'s order) it reads
docs/studies/NAME/report.md's verdict tables ("Did the paper's shape appear?", and any in the
study's own section) and NAME's line in docs/studies/RUN.txt, and replaces what lies between
``<!-- study-tables -->`` and ``<!-- /study-tables -->`` in both files: a summary (verdict
counts, seeds, time) and each study's table (claim, paper's figure, ours, verdict).
``--check`` writes nothing and exits 1 where a file is not what the reports say.
"""

import re
import sys
from pathlib import Path

from bnlab.lab import experiments

ROOT = Path(__file__).resolve().parents[1]
STUDIES_DIR = ROOT / "docs" / "studies"
TARGETS = {ROOT / "README.md": "docs/studies/", STUDIES_DIR / "README.md": ""}
BEGIN, END = "<!-- study-tables -->", "<!-- /study-tables -->"
VERDICTS = ("appeared", "contradicted", "inconclusive")
KEEP = 5  # claim, paper's figure, ours, verdict, seeds: the report adds the test and the formula


def verdict_rows(report):
    """The rows of every verdict table in a report (the opening one, and any a study's own
    section adds, such as learning-rate-range's claims on whole grids), each a list of its cells."""
    rows, inside = [], False
    for line in report.read_text(encoding="utf-8").splitlines():
        if line.startswith("| claim | paper's figure |"):
            inside = True
        elif not line.startswith("|"):
            inside = False
        elif inside and not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    return rows


def run_line(name):
    """What RUN.txt says of the study's last run: wall and CPU time, workers and load."""
    lines = (STUDIES_DIR / "RUN.txt").read_text(encoding="utf-8").splitlines()
    line = next((x for x in lines if x.startswith(f"{name}: ")), None)
    if line is None:
        return "not in RUN.txt"
    wall, cpu = re.search(r"(\d+) s wall", line), re.search(r"(\d+) s CPU", line)
    loads = re.findall(r"load average ([\d.]+)", line)
    workers = re.search(r"(\d+) worker", line)
    if not (wall and cpu and len(loads) == 2):
        return "see RUN.txt"
    minutes = int(wall.group(1)) / 60
    return (f"{minutes:.1f} min wall, {int(cpu.group(1)):,} s CPU"
            f"{f', {workers.group(1)} workers' if workers else ''} (load {loads[0]} → {loads[1]})")


def block(link):
    out = ["| study | verdicts | seeds | time (docs/studies/RUN.txt) |", "|---|---|---|---|"]
    tables = []
    for experiment in experiments.STUDIES:
        name = experiment.name
        rows = verdict_rows(STUDIES_DIR / name / "report.md")
        counts = {v: sum(r[3].startswith(v) for r in rows) for v in VERDICTS}
        summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
        seeds = sorted({r[4] for r in rows})
        out.append(f"| [`{name}`]({link}{name}/report.md) | {summary} | {', '.join(seeds)} | "
                   f"{run_line(name)} |")
        tables += ["", f"`{name}`: {experiment.title}", "",
                   "| claim | paper's figure | ours: paired difference | verdict | seeds |",
                   "|---|---|---|---|---|"]
        tables += ["| " + " | ".join(r[:KEEP]) + " |" for r in rows]
    return "\n".join([BEGIN, *out, *tables, END])


def main(argv):
    stale = []
    for path, link in TARGETS.items():
        text = path.read_text(encoding="utf-8")
        if text.count(BEGIN) != 1 or text.count(END) != 1:
            sys.exit(f"study_tables: {path} needs one {BEGIN} … {END} pair")
        head, rest = text.split(BEGIN)
        new = head + block(link) + rest.split(END, 1)[1]
        if new != text:
            stale.append(path)
            if "--check" not in argv:
                path.write_text(new, encoding="utf-8")
    if stale:
        print("study_tables: " + ("out of date: " if "--check" in argv else "wrote ")
              + ", ".join(str(p.relative_to(ROOT)) for p in stale))
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
