"""nbval, the notebook test tool instructors know, runs on the solutions (``make nbval``).

``make nbval`` runs every solution under nbval; the suite does not run a whole lesson a second time for it:
the notebook tests already compare every lesson's stored outputs with a fresh run
(``tools/stored_outputs.py``). Here: every lesson stores outputs for nbval, and nbval fails a stored output
that a run no longer gives, shown on a one-cell notebook.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nbformat
import pytest
import stored_outputs
from conftest import ROOT

from qlora_course import syllabus

pytestmark = pytest.mark.notebook


def _nbval(path, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "QLORA_COURSE_STATIC_WIDGETS": "1", "MPLBACKEND": "Agg", "QLORA_COURSE_REPORT": ""}
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider", "-q"]
    return subprocess.run([*cmd, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)


def test_every_lesson_stores_outputs_for_nbval():
    for les in syllabus.LESSONS:
        nb = json.loads((ROOT / les.solution).read_text(encoding="utf-8"))
        tagged = [c for c in nb["cells"] if stored_outputs.checked(c)]
        assert tagged, f"{les.name}: tag the cells whose output is the same on every machine nbval-check-output"
        assert all(c["outputs"] and c["execution_count"] for c in tagged), f"{les.name}: run `make course`"


def test_nbval_catches_an_output_that_changed(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(2 + 2)", metadata={"tags": [stored_outputs.TAG]}, execution_count=1)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="5\n")]
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / "wrong.ipynb")
    result = _nbval(tmp_path / "wrong.ipynb", tmp_path)
    assert result.returncode != 0 and "5" in result.stdout, result.stdout[-2000:]
