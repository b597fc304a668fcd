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
    ``QLORA_COURSE_EXECUTED`` names a folder of executed copies instead (e.g. ``course-output``)."""
    folder = os.environ.get("QLORA_COURSE_EXECUTED")
    return Path(folder) if folder else tmp_path_factory.mktemp("executed")


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
