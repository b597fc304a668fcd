import os
import sys
from pathlib import Path

import pytest

from qlora_course import syllabus

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

LESSONS = syllabus.names()


@pytest.fixture(scope="session")
def executed_dir(tmp_path_factory) -> Path:
    """The folder of this session's executed solution notebooks: the notebook tests put each lesson's
    there as they run it, and the site test builds from it (running itself any lesson that is missing).
    Under ``pytest -n`` every worker uses one folder, so the site sees the lessons other workers ran.
    ``QLORA_COURSE_EXECUTED`` names a folder of executed copies instead (e.g. ``course-output``)."""
    folder = os.environ.get("QLORA_COURSE_EXECUTED")
    if folder:
        return Path(folder)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent / "executed"
        shared.mkdir(exist_ok=True)
        return shared
    return tmp_path_factory.mktemp("executed")


def _weight(item) -> int:
    """Longest first, so that under ``pytest -n`` no long test starts last: the notebook runs (the later
    lessons are the longer), then the rest; the site, which waits for the executed notebooks, at the end."""
    if item.module.__name__ == "test_site":
        return 3
    if item.get_closest_marker("notebook") is None:
        return 2
    lesson = getattr(item, "callspec", None) and item.callspec.params.get("lesson")
    return 0 if lesson in ("05_qlora_finetune", "06_chat_model") else 1


def pytest_collection_modifyitems(config, items):
    items.sort(key=_weight)  # stable: the collection order within each group


@pytest.fixture(scope="session")
def assigned(tmp_path_factory) -> Path:
    """``otter assign`` of every lesson into a temporary folder (student notebooks and autograders)."""
    import build_notebooks

    out = tmp_path_factory.mktemp("assign")
    build_notebooks.build(out / "notebooks", out / "tests", out / "assign")
    return out


@pytest.fixture(scope="session")
def course_tokenizer():
    """The packaged course model's tokenizer, loaded once for the whole run (do not change it)."""
    from transformers import AutoTokenizer

    from qlora_course.models import course_model_path

    return AutoTokenizer.from_pretrained(course_model_path())


@pytest.fixture(scope="session")
def course_model():
    """The packaged course model in float32, in eval mode, loaded once (read-only: never train it)."""
    import torch
    from transformers import AutoModelForCausalLM

    from qlora_course.models import course_model_path

    return AutoModelForCausalLM.from_pretrained(course_model_path(), dtype=torch.float32).eval()
