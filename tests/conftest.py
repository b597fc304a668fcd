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
    ``QLORA_COURSE_EXECUTED`` names a folder of executed copies instead (e.g. ``course-output``); ``make
    test`` uses one for its parallel run, and its site test builds from it (``tools/run_tests.py``)."""
    folder = os.environ.get("QLORA_COURSE_EXECUTED")
    return Path(folder) if folder else tmp_path_factory.mktemp("executed")


# Under ``pytest -n`` (make test), the units that must stay on one worker, with their rough cost in seconds
# on one thread: each lesson's notebook test, and the modules whose module-scoped fixture is expensive
# (a worker that ran part of such a module would build the fixture again). Longest first, so that no
# long unit starts last (the notebooks before the modules: see _order); every other test is a unit of its
# own, after them.
UNITS = {
    "notebook-06_chat_model": 250,
    "notebook-05_qlora_finetune": 200,
    "test_grading": 200,
    "notebook-07_fsdp_qlora": 90,
    "notebook-04_memory": 80,
    "test_hub_paths": 80,
    "test_distributed": 70,
    "notebook-01_lowrank_lora": 55,
    "notebook-02_nf4": 50,
    "notebook-03_double_quant": 40,
}


def unit_of(nodeid: str) -> str | None:
    """The unit of :data:`UNITS` the test ``nodeid`` belongs to, or None."""
    module = Path(nodeid.split("::", 1)[0]).stem
    if module == "test_notebooks" and "[" in nodeid:
        return "notebook-" + nodeid.rsplit("[", 1)[1].rstrip("]")
    return module if module in UNITS else None


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected theirs
def pytest_collection_modifyitems(config, items):
    # the few-salt fairness check (the fast lane's) tries the first salts of the many-salt one: where both
    # were selected, the many-salt run alone covers it
    many = {i.nodeid.replace("_on_many_salts[", "_on_a_few_salts[") for i in items if "_on_many_salts[" in i.nodeid}
    dropped = [i for i in items if i.nodeid in many]
    if dropped:
        items[:] = [i for i in items if i.nodeid not in many]
        config.hook.pytest_deselected(items=dropped)
    items.sort(key=_order)  # stable: collection order within a unit


def _order(item) -> tuple[int, int]:
    """The lessons' notebook tests first, the longest first (the website test, which starts beside the
    workers, needs every lesson executed: tools/run_tests.py), then the other units of :data:`UNITS`, the
    longest first, then the rest."""
    unit = unit_of(item.nodeid)
    return (0 if unit and unit.startswith("notebook-") else 1, -UNITS.get(unit, 0))


try:
    import xdist  # noqa: F401  (make drift's environments run without it)
except ImportError:
    pass
else:

    def pytest_xdist_make_scheduler(config, log):
        """pytest-xdist's scope scheduling with :func:`unit_of` as the scope: a unit goes to one worker whole,
        in the order above (``--no-loadscope-reorder``). (Its ``xdist_group`` marks do not reach the scheduler
        under pytest 9, which no longer takes the node ids they rewrite.)"""
        from xdist.scheduler import LoadScopeScheduling

        class UnitScheduling(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                return unit_of(nodeid) or nodeid

        return UnitScheduling(config, log)


@pytest.fixture(scope="session")
def assigned(tmp_path_factory) -> Path:
    """``otter assign`` of every lesson into a temporary folder (student notebooks and autograders), read
    only. Under ``pytest -n`` the workers share one copy: the first builds it, the others wait for it."""
    import fcntl

    import build_notebooks

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        out = tmp_path_factory.mktemp("assign")
        build_notebooks.build(out / "notebooks", out / "tests", out / "assign")
        return out
    out = tmp_path_factory.getbasetemp().parent / "assign"
    out.mkdir(exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (out / ".built").exists():
            build_notebooks.build(out / "notebooks", out / "tests", out / "assign")
            (out / ".built").touch()
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
