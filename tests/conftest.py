import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

LESSONS = sorted(p.stem for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="session")
def assigned(tmp_path_factory) -> Path:
    """``otter assign`` of every lesson into a temporary folder (student notebooks and autograders)."""
    import build_notebooks

    out = tmp_path_factory.mktemp("assign")
    build_notebooks.build(out / "notebooks", out / "tests", out / "assign")
    return out
