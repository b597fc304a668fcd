"""The one list of the course's lessons, and what belongs to each.

Every tool and test iterates :data:`LESSONS`; no other file lists lessons. A lesson ``NN_slug`` has:

- ``solutions/NN_slug.ipynb``: the solved notebook, the single source;
- ``notebooks/NN_slug.ipynb`` and ``src/qlora_course/exercise_tests/NN_slug/``: generated from it by
  ``make notebooks``;
- ``lessons/NN-slug.md``: the lecture notes (a board plan);
- ``qlora_course.exercises.<slug>``: its exercises, each defined once (points, probe, reference, answers
  for the tests of the tests);
- its figures in ``lessons/figures.json`` (written by ``make course``) and a row in the README's syllabus.

``tests/test_syllabus.py`` names exactly what a half-added lesson lacks.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Lesson", "LESSONS", "lesson", "names"]


@dataclass(frozen=True)
class Lesson:
    """One lesson.

    ``number`` and ``slug`` make its name (``01_lowrank_lora``). ``title``: as the syllabus shows it.
    ``key_figure``: a text the lesson's executed notebook prints that is the same on every machine (no
    timing, no training result): the website's browser test looks for it on the lesson's page.
    ``context``: code that a trimmed notebook must keep besides the setup cell, answers and checks (the
    public tests read what it builds); a code cell that contains an item is kept.
    ``reproduces``: an expression the notebook test evaluates after the run, the largest difference
    between the notebook's live results and results a tool stored (None: nothing stored to reproduce).
    """

    number: int
    slug: str
    title: str
    key_figure: str
    context: tuple[str, ...] = ()
    reproduces: str | None = None

    @property
    def id(self) -> str:
        """``"01"``: the number as the files spell it."""
        return f"{self.number:02d}"

    @property
    def name(self) -> str:
        """``"01_lowrank_lora"``: the notebooks' file stem, the grader's and the gradebook's lesson name."""
        return f"{self.id}_{self.slug}"

    @property
    def solution(self) -> str:
        return f"solutions/{self.name}.ipynb"

    @property
    def notebook(self) -> str:
        return f"notebooks/{self.name}.ipynb"

    @property
    def notes(self) -> str:
        return f"lessons/{self.id}-{self.slug.replace('_', '-')}.md"

    @property
    def exercise_tests(self) -> str:
        return f"src/qlora_course/exercise_tests/{self.name}"

    @property
    def exercises_module(self) -> str:
        return f"qlora_course.exercises.{self.slug}"


LESSONS: tuple[Lesson, ...] = (
    Lesson(1, "lowrank_lora", "Low-rank decomposition and LoRA", key_figure="4,194,304"),
    Lesson(2, "nf4", "NF4: 4-bit NormalFloat quantization", key_figure="-0.6962"),
    Lesson(3, "double_quant", "Double quantization", key_figure="brings that to 0.127"),
    Lesson(
        4,
        "memory",
        "Where fine-tuning memory goes, and paged optimizers",
        key_figure="3,866 MB",
        context=("course_cfg = model.config",),
        reproduces="abs(live['accuracy'] - stored0['AdamW8bit']['accuracy'])",
    ),
    Lesson(
        5,
        "qlora_finetune",
        "A full Llama QLoRA fine-tune",
        key_figure="598,016",
        context=("data = load_task_data(profile)",),
        reproduces="max(live_vs_stored)",
    ),
    Lesson(
        6,
        "chat_model",
        "Your own data, a chat model, shipped",
        key_figure="What did you just say noodles was?",
        context=("data = chat.make_chat_data(",),
    ),
    Lesson(
        7,
        "fsdp_qlora",
        "Past one GPU: FSDP-QLoRA",
        key_figure="19.22GB",
    ),
)


def names() -> list[str]:
    """Every lesson's name, in course order."""
    return [les.name for les in LESSONS]


def lesson(key: str | int) -> Lesson:
    """A lesson by name (``"03_double_quant"``), id (``"03"``) or number (``3``)."""
    for les in LESSONS:
        if key in (les.name, les.id, les.number) and not isinstance(key, bool):
            return les
    raise ValueError(f"key: no lesson {key!r}; the course has {names()} (numbers 1 to {len(LESSONS)})")
