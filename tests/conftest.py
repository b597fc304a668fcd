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
