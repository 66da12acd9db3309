"""`pipetune lint` as a user runs it: text and JSON output, exit codes, --fix in place."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import ROOT, pipetune


def test_lint_reports_like_a_linter_and_fixes_in_place(tmp_path: Path) -> None:
    script = tmp_path / "etl_parquet.py"
    shutil.copy(ROOT / "examples" / "etl_parquet.py", script)
    done = pipetune("lint", script.name, cwd=tmp_path)
    assert done.returncode == 1
    assert "etl_parquet.py:70:10: PT009" in done.stdout and "fixable with --fix" in done.stderr
    as_json = json.loads(pipetune("lint", script.name, "--format", "json", cwd=tmp_path).stdout)
    assert {r["rule"] for r in as_json} >= {"PT004", "PT008", "PT009"}
    fixed = pipetune("lint", script.name, "--fix", cwd=tmp_path)
    assert "fixed 1 file" in fixed.stderr
    text = script.read_text()
    assert 'filter(expr=(col("amount") > 0) & (col("quantity") > 0), num_cpus=1)' in text
    compile(text, str(script), "exec")
    assert pipetune("lint", script.name, cwd=tmp_path).returncode == 0  # the rest were fixed


def test_lint_of_a_missing_file_is_one_line(tmp_path: Path) -> None:
    done = pipetune("lint", "nope.py", cwd=tmp_path)
    assert done.returncode == 2 and "does not exist" in done.stderr
