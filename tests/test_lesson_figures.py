"""Every measured number in the lecture notes is a figure recorded by `make course`, quoted right."""

from __future__ import annotations

from pathlib import Path

import lesson_figures as lf
import pytest


def test_every_measured_number_in_the_notes_is_tagged():
    found = [line for path in lf.notes() for line in lf.untagged(path)]
    assert not found, (
        "numbers in lessons/ that look measured but quote no recorded figure (tag them <!--fig:key-->, "
        "or point to the cell instead):\n" + "\n".join(found)
    )


def test_quoted_numbers_agree_with_the_recorded_figures():
    figures = {k: v["value"] for k, v in lf.snapshot().items()}
    wrong = lf.disagreements(figures)
    assert not wrong, "lessons/ disagrees with lessons/figures.json (the last `make course`):\n" + "\n".join(wrong)


def test_the_notes_quote_no_timing():
    varies = {k for k, v in lf.snapshot().items() if v.get("varies")}
    timed = [f"{q.file}:{q.line}: {q.key}" for p in lf.notes() for q in lf.quotes(p) if q.key in varies]
    assert not timed, "a timing differs by machine: point to its cell instead of quoting it:\n" + "\n".join(timed)


def test_every_lesson_quotes_figures():
    for path in lf.notes():
        if path.name[:2].isdigit():
            assert lf.quotes(path), f"{path.name} quotes no recorded figure"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "01-x.md"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "text",
    [
        "NF4 keeps 3.88 bits of entropy",
        "it saves 3 GB on 65B",
        "about 0.06% of the weights",
        "checkpointing is 1.3× slower",
        "4,194,304 trainable parameters",
        "16.8M become 65K",
        "the run takes 4 min",
    ],
)
def test_untagged_measurements_are_found(tmp_path, text):
    assert lf.untagged(_write(tmp_path, text))


@pytest.mark.parametrize(
    "text",
    [
        "NF4 has 16 values in 4 bits, blocks of 64, r = 8 on LLaMA-7B",
        "the formula $32/64 = 0.5$ and `torch 2.13.0`",
        "see [§3](../solutions/02_nf4.ipynb#3.2) and lesson 4",
        "NF4 keeps 3.88<!--fig:entropy_nf4--> bits",
    ],
)
def test_settings_code_and_tagged_numbers_are_not_flagged(tmp_path, text):
    assert not lf.untagged(_write(tmp_path, text))


def test_a_quote_must_match_its_figure_at_the_digits_shown(tmp_path):
    (q,) = lf.quotes(_write(tmp_path, "stores 3.87<!--fig:size_mb/1000--> GB"))
    assert q.agrees(3865.8) and not q.agrees(3875.1) and not q.agrees(float("nan"))
    (q,) = lf.quotes(_write(tmp_path, "**4,194,304**<!--fig:n--> parameters"))
    assert q.agrees(4194304.0) and not q.agrees(4194305.0)
