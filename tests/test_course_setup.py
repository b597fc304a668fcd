"""The repository location setting, the notebook setup helpers and the toy tasks."""

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import LESSONS, ROOT

from qlora_course import notebook, toy
from qlora_course.public_tests import exercise_tests_dir


def test_every_badge_and_setup_cell_uses_the_one_repository_setting():
    from build_notebooks import course_settings

    repo, branch = course_settings()
    files = [ROOT / "README.md"] + [
        ROOT / d / f"{lesson}.ipynb" for d in ("solutions", "notebooks") for lesson in LESSONS
    ]
    found = 0
    for path in files:
        text = path.read_text()
        for m in re.finditer(r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/([\w.-]+)/", text):
            assert (m.group(1), m.group(2)) == (repo, branch), f"{path.name}: badge points at {m.group(0)}"
            found += 1
        for m in re.finditer(r'COURSE_REPO, COURSE_REF = \\?"([^"\\]*)\\?", \\?"([^"\\]*)\\?"', text):
            assert (m.group(1), m.group(2)) == (repo, branch), f"{path.name}: setup cell points at {m.group(0)}"
            found += 1
    assert found >= 3 * len(LESSONS)


def test_colab_setup_cell_never_installs_torch():
    for lesson in LESSONS:
        nb = json.loads((ROOT / "solutions" / f"{lesson}.ipynb").read_text())
        setup = next(
            "".join(c["source"])
            for c in nb["cells"]
            if c["cell_type"] == "code" and "google.colab" in "".join(c["source"])
        )
        install_lines = [line for line in setup.splitlines() if "pip" in line]
        assert install_lines and not any("torch" in line for line in install_lines), install_lines
        assert "qlora-course[colab]" in setup


def test_seeding_repeats_results_and_device_choice(monkeypatch):
    from qlora_course.models import pick_device_and_dtype

    notebook.seed_everything(3)
    a = torch.randn(4)
    notebook.seed_everything(3)
    assert torch.equal(a, torch.randn(4))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device_and_dtype() == ("cpu", torch.float32)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for native_bf16, dtype in ((True, torch.bfloat16), (False, torch.float16)):  # Ampere+, T4
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True, b=native_bf16: b)
        assert pick_device_and_dtype() == ("cuda", dtype)
    with pytest.raises(ValueError, match="non-negative int"):
        notebook.seed_everything(-1)


def test_toy_tasks_are_deterministic_and_training_is_repeatable():
    t1, t2 = toy.make_tasks(seed=5, n_train=500, n_test=100), toy.make_tasks(seed=5, n_train=500, n_test=100)
    assert torch.equal(t1[1].y_train, t2[1].y_train) and torch.equal(t1[0].X_test, t2[0].X_test)
    assert not torch.equal(t1[0].y_train, t1[1].y_train)
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        model = toy.MLP()
        losses.append(toy.train(model, t1[0], steps=30, progress=False))
    assert losses[0] == losses[1]
    assert losses[0][-1] < losses[0][0]
    with pytest.raises(ValueError, match="no trainable parameters"):
        toy.train(model.requires_grad_(False), t1[0], steps=1, progress=False)


def test_public_exercise_tests_ship_with_the_package():
    from qlora_course import exercises

    for lesson in LESSONS:
        shipped = sorted(p.name for p in Path(exercise_tests_dir(lesson)).glob("*.py"))
        assert shipped == sorted(f"{ex.name}.py" for ex in exercises.exercises(lesson)), lesson
    with pytest.raises(ValueError, match="no exercise tests"):
        exercise_tests_dir("99_nothing")


def _install_part(lesson: str) -> str:
    """The Colab part of a lesson's setup cell: everything before its first library import."""
    nb = json.loads((ROOT / "solutions" / f"{lesson}.ipynb").read_text())
    setup = next(
        "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code" and "google.colab" in "".join(c["source"])
    )
    start = setup.index('if "google.colab"')
    return setup[:start] + setup[start:].split("\n\n", 1)[0]


@pytest.mark.parametrize("lesson", LESSONS)
def test_colab_setup_stops_with_one_message_when_the_install_fails(lesson, monkeypatch):
    import subprocess
    import sys
    import types

    code = _install_part(lesson)
    calls = []

    def failing_run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that satisfies ... github.com")

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run", failing_run)
    with pytest.raises(SystemExit) as stop:
        exec(compile(code, f"{lesson} setup", "exec"), {})
    message = str(stop.value)
    assert calls and "Could not install the course package" in message and "github.com" in message
    assert "internet access" in message and "run this cell again" in message


def test_static_widgets_draw_once_at_the_starting_values(monkeypatch, capsys):
    import ipywidgets as widgets

    seen = []
    monkeypatch.setenv("QLORA_COURSE_STATIC_WIDGETS", "1")

    @notebook.interactive(
        r=widgets.IntSlider(value=4, min=1, max=8), kind=widgets.Dropdown(options=["a", "b"], value="b")
    )
    def draw(r, kind):
        seen.append((r, kind))

    assert seen == [(4, "b")] and "static figure" in capsys.readouterr().out
    monkeypatch.setenv("QLORA_COURSE_STATIC_WIDGETS", "0")
    assert not notebook.static_widgets()


def test_threads_follow_the_usable_cpus_and_the_environment(monkeypatch, tmp_path):
    before = torch.get_num_threads()
    try:
        (tmp_path / "cpu.max").write_text("150000 100000\n")  # a container allowed 1.5 CPUs
        assert notebook.usable_cpus(str(tmp_path)) == 1
        (tmp_path / "cpu.max").write_text("max 100000\n")
        assert notebook.usable_cpus(str(tmp_path)) == len(__import__("os").sched_getaffinity(0))
        monkeypatch.setenv("QLORA_COURSE_THREADS", "1")
        assert notebook.set_threads() == 1 == torch.get_num_threads()
        for bad in ("0", "two", "-1", "1.5"):
            monkeypatch.setenv("QLORA_COURSE_THREADS", bad)
            with pytest.raises(ValueError, match="QLORA_COURSE_THREADS"):
                notebook.set_threads()
        with pytest.raises(ValueError):
            notebook.set_threads(0)
    finally:
        torch.set_num_threads(before)


def test_a_figures_alt_text_comes_from_its_titles():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3)
    fig.suptitle(r"Error against rank $r$ ($\alpha = 2r$, $\mathrm{rsLoRA}$)")
    a.set_title("singular values")
    b.set_xlabel("rank")
    b.set_ylabel("error")
    assert notebook.figure_description(fig) == (
        "Error against rank r (alpha = 2r, rsLoRA). Panels: singular values; error against rank"
    )
    plt.close(fig)
    fig, ax = plt.subplots()
    assert notebook.figure_description(fig) == ""  # nothing to describe it by: the site test names it
    ax.set_title("only a panel title")
    assert notebook.figure_description(fig) == "only a panel title"
    plt.close(fig)
    assert notebook.describe_figures() is False  # outside IPython there is nothing to register


def test_the_readmes_first_screen_serves_a_learner():
    """Who it is for, lesson 1 in Colab, and the one local command (``make lab``, JupyterLab on the student
    notebooks) come before anything for maintainers."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first, _, rest = readme.partition("## For instructors and maintainers")
    assert rest, "the README has no part for instructors and maintainers"
    screen = first.split("## Syllabus")[0]
    for needed in ("Who it is for", "Start here", "notebooks/01_lowrank_lora.ipynb", "make lab"):
        assert needed in screen, needed
    for maintainer in ("make test", "bubblewrap", "TEST_JOBS"):
        assert maintainer not in first, maintainer
    lab = re.search(r"^lab:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert lab and "jupyter lab" in lab.group(1) and "root_dir=notebooks" in lab.group(1)
