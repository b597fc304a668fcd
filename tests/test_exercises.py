"""Every exercise is fair both ways, by its one definition (``qlora_course.exercises``), over many salts.

For each exercise: the solution notebook's answer and every other right answer (``alternatives``) equal
the reference on every salt and use no finished object; every plausible mistake (``wrong``), every cheat
(``cheats``, the finished objects among them) and an object that claims to equal anything differ on
every salt. This is the comparison ``make grade`` and the notebook's hidden check make
(:func:`qlora_grading.probe_values`, :func:`qlora_grading.wire.differences`), run here in-process; the
sandboxed path is ``tests/test_grading.py``'s. The fast lane tries a few salts, the slow lane
``SALTS_SLOW`` (``QLORA_COURSE_SALTS``, 20 by default); each salt draws new shapes, scales and data.
"""

from __future__ import annotations

import os

import pytest
from conftest import LESSONS
from notebook_harness import ALWAYS_EQUAL, answer_namespace, solution_answers

from qlora_course import exercises
from qlora_grading import hidden_problems, probe_values
from qlora_grading.wire import differences

SALTS_FAST = 6
# the slow lane of `make test`; when an exercise is added or changed, try many more:
#   QLORA_COURSE_SALTS=50 .venv/bin/python -m pytest -m slow tests/test_exercises.py
SALTS_SLOW = int(os.environ.get("QLORA_COURSE_SALTS", "20"))

CASES = [(lesson, ex.name) for lesson in LESSONS for ex in exercises.exercises(lesson)]

_references: dict = {}


def _reference(ex, salt: str) -> dict:
    key = (ex.name, salt)
    if key not in _references:
        _references[key] = probe_values(ex, ex.answer_reference, salt, trace=False)[0]
    return _references[key]


def _outcomes(lesson: str, ex, code: str, salts: list[str]) -> list[str]:
    """Per salt: "right", or why not ("differs: ...", "raises ...", "uses ...")."""
    ns = answer_namespace(lesson)
    exec(code, ns)
    out = []
    for salt in salts:
        try:
            got, used = probe_values(ex, ns[ex.name], salt)
        except Exception as err:  # noqa: BLE001 - a wrong answer may raise anything
            out.append(f"raises {type(err).__name__}: {str(err)[:80]}")
            continue
        wrong = differences(got, _reference(ex, salt), ex.tolerance)
        out.append(f"uses {used}" if used else f"differs: {wrong[:3]}" if wrong else "right")
    return out


def _check(lesson: str, name: str, n: int) -> None:
    ex = exercises.exercise(lesson, name)
    salts = [f"{lesson}/{name}/{i}" for i in range(n)]
    problems = []
    right = [("the solution", solution_answers(lesson)[name])]
    right += [(f"alternative {i + 1}", code) for i, code in enumerate(ex.alternatives)]
    for label, code in right:
        bad = [o for o in _outcomes(lesson, ex, code, salts) if o != "right"]
        if bad:
            problems.append(f"{label} is judged wrong on {len(bad)} of {n} salts: {bad[0]}")
    scoring = [(f"wrong answer {i + 1}", c) for i, c in enumerate(ex.wrong)]
    scoring += [(f"cheat {i + 1}", c) for i, c in enumerate(ex.cheats)]
    scoring += [("an always-equal object", ALWAYS_EQUAL.replace("{name}", name))]
    for label, code in scoring:
        passed = _outcomes(lesson, ex, code, salts).count("right")
        if passed:
            problems.append(f"{label} is judged right on {passed} of {n} salts:\n{code}")
    assert not problems, f"{lesson} {name}:\n" + "\n".join(problems)


@pytest.mark.parametrize(("lesson", "name"), CASES)
def test_fair_both_ways_on_a_few_salts(lesson, name):
    _check(lesson, name, SALTS_FAST)


@pytest.mark.slow
@pytest.mark.parametrize(("lesson", "name"), CASES)
def test_fair_both_ways_on_many_salts(lesson, name):
    _check(lesson, name, SALTS_SLOW)


def test_every_exercise_has_answers_to_try():
    for lesson in LESSONS:
        for ex in exercises.exercises(lesson):
            assert ex.wrong, f"{lesson} {ex.name}: give plausible wrong answers"
            assert ex.alternatives, f"{lesson} {ex.name}: give other right answers"


def test_a_probe_never_calls_its_own_finished_objects():
    """The tracer watches the whole probe: a probe that itself called a finished object would fail every
    answer. The solution's answers (which use none) come out clean."""
    for lesson in LESSONS:
        ns = answer_namespace(lesson)
        for ex in exercises.exercises(lesson):
            exec(solution_answers(lesson)[ex.name], ns)
            _, used = probe_values(ex, ns[ex.name], "clean")
            assert not used, (lesson, ex.name, used)


def test_a_finished_object_is_named_to_the_learner():
    ex = exercises.exercise("01_lowrank_lora", "LoRALayer")
    ns = answer_namespace("01_lowrank_lora")
    exec("class LoRALayer(lora.LoRALinear):\n    pass\n", ns)
    with pytest.raises(AssertionError, match=r"LoRALinear.*write it yourself"):
        exercises.check_own_work("01_lowrank_lora", "LoRALayer", ns)
    exec(solution_answers("01_lowrank_lora")["LoRALayer"], ns)
    exercises.check_own_work("01_lowrank_lora", "LoRALayer", ns)  # the own work passes
    assert ex.finished_names[0] == "LoRALinear"


def test_every_result_of_a_partly_credited_exercise_is_in_one_part():
    for lesson in LESSONS:
        for ex in exercises.exercises(lesson):
            if ex.parts:
                keys = list(_reference(ex, "parts").keys())
                assert {ex.part_of(k) for k in keys} == set(ex.parts), (lesson, ex.name)  # raises if not one


def test_partial_credit_scores_each_part_and_the_grader_agrees():
    """The solution's LoRALayer with a merge that does nothing: its set-up and its forward are right, its
    merge is not, so it earns 2 of 3 points, in the notebook's hidden cells and in make grade's scoring
    alike."""
    from qlora_grading.grade import score

    lesson, ex = "01_lowrank_lora", exercises.exercise("01_lowrank_lora", "LoRALayer")
    broken = solution_answers(lesson)[ex.name] + "\n\nLoRALayer.merge = lambda self: None\n"
    ns = answer_namespace(lesson)
    exec(broken, ns)
    want = _reference(ex, "partial")
    got, used = probe_values(ex, ns[ex.name], "partial")
    earned = ex.part_points(list(want), differences(got, want, ex.tolerance))
    assert earned == {label: (0.0 if "merge" in label else 1.0) for label in ex.parts}, earned
    for label in ex.parts:
        assert bool(hidden_problems(ex, ns[ex.name], ["partial"], part=label)) == ("merge" in label), label
    course = exercises.course()
    events = [{"event": "public", "q": ex.name, "passed": False, "error": "AssertionError: x"}]
    events.append({"event": "probe", "q": ex.name, "values": got, "used": used})
    reference = {e.name: want if e is ex else {} for e in course.exercises(lesson)}
    result = score(course, lesson, events, reference, "", [])
    assert result.points[ex.name] == 2.0 and "merge and unmerge: " in result.feedback[ex.name]
