"""The studies' verdict tables in README.md and docs/studies/README.md are what the committed
reports say (scripts/study_tables.py writes them; run it after committing a study's report)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("study_tables", ROOT / "scripts/study_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readmes_tables_are_the_reports(capsys):
    assert _script().main(["--check"]) == 0, capsys.readouterr().out


def test_a_report_table_is_read_cell_by_cell(tmp_path):
    report = tmp_path / "report.md"
    header = "| claim | paper's figure | ours | verdict | seeds | test | d |\n|---|---|\n"
    report.write_text("# t\n\n## Did the paper's shape appear?\n\n" + header +
                      "| A rises | +1 | +2.00 ± 0.50 pt | appeared | 8 | t | a − b |\n"
                      "| B flat | 0 | -1.00 ± 0.90 pt | inconclusive: most likely, x | 8 | TOST | c |\n"
                      "\n## Next\n\n| not | a | verdict |\n|---|---|---|\n| x | y | appeared |\n"
                      "\n## The study's own\n\n" + header +
                      "| C wider | 30× | +1.70 ± 0.34 | appeared | 5 | t | e |\n", encoding="utf-8")
    rows = _script().verdict_rows(report)
    assert [r[3] for r in rows] == ["appeared", "inconclusive: most likely, x", "appeared"]
    assert rows[0][:3] == ["A rises", "+1", "+2.00 ± 0.50 pt"]
