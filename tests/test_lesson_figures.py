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
    snap = lf.snapshot()
    wrong = lf.disagreements({k: v["value"] for k, v in snap.items()}, tols=lf.tolerances(snap), limits=lf.bounds(snap))
    assert not wrong, "lessons/ disagrees with lessons/figures.json (the last `make course`):\n" + "\n".join(wrong)


def test_every_figure_has_a_tolerance():
    missing = [k for k, v in lf.snapshot().items() if not v.get("varies") and not isinstance(v.get("tol"), float)]
    assert not missing, "figures without a tolerance (run `make course`): " + ", ".join(missing)


def test_the_notes_quote_no_more_digits_than_the_tolerance_allows():
    found = lf.too_precise(lf.tolerances(lf.snapshot()))
    assert not found, "a quoted digit that changes from machine to machine:\n" + "\n".join(found)


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


def test_a_quote_agrees_within_its_tolerance(tmp_path):
    (q,) = lf.quotes(_write(tmp_path, "scores 93.0<!--fig:acc-->%"))
    assert q.agrees(93.04) and not q.agrees(91.5)
    assert q.agrees(91.5, tol=1.5) and q.agrees(94.5, tol=1.5) and not q.agrees(90.9, tol=2.0)
    (q,) = lf.quotes(_write(tmp_path, "QLoRA is 0.3<!--fig:gap*-1--> points above"))
    assert q.agrees(-0.8, tol=0.5) and not q.agrees(0.3, tol=0.5)  # the tolerance scales with the factor


def test_a_range_must_hold_the_figure_plus_or_minus_its_tolerance(tmp_path):
    (q,) = lf.quotes(_write(tmp_path, "without the story 88–98<!--fig:no_story range-->% (seen words)"))
    assert (q.low, q.shown, q.text()) == ("88", "98", "88–98")
    assert q.agrees(93.0, tol=5.0) and q.agrees(91.5, tol=3.0) and q.agrees(98.0)
    assert not q.agrees(93.0, tol=5.5) and not q.agrees(96.0, tol=3.0) and not q.agrees(87.0)
    assert not q.too_precise(100.0), "a range says how far the figure may move: never too precise"
    (q,) = lf.quotes(_write(tmp_path, "loss 0.40–0.52<!--fig:loss range-->"))
    assert q.agrees(0.46, tol=0.06) and not q.agrees(0.46, tol=0.07)


def test_a_range_without_its_tag_is_two_numbers(tmp_path):
    path = _write(tmp_path, "seeds from 77.5<!--fig:lo-->–96.5<!--fig:hi--> and 1–2.5<!--fig:x--> GB")
    assert [(q.low, q.shown, q.key) for q in lf.quotes(path)] == [
        (None, "77.5", "lo"),
        (None, "96.5", "hi"),
        (None, "2.5", "x"),
    ]
    assert lf.untagged(_write(tmp_path, "between 0.44–0.48<!--fig:loss range-->")) == []
    with pytest.raises(ValueError, match="range tag needs low–high"):
        lf.quotes(_write(tmp_path, "about 93<!--fig:acc range-->%"))


def test_a_quote_finer_than_its_tolerance_is_too_precise(tmp_path, monkeypatch):
    monkeypatch.setattr(lf, "notes", lambda: [_write(tmp_path, "scores 93.0<!--fig:acc-->%, loss 0.46<!--fig:loss-->")])
    assert not lf.too_precise({"acc": 0.1, "loss": 0.01})  # within one unit of the last digit
    (found,) = lf.too_precise({"acc": 1.5, "loss": 0.01})
    assert "93.0 (acc) shows steps of 0.1" in found and "±1.5" in found and "quote a range" in found
    assert len(lf.too_precise({"acc": 0.0, "loss": 0.02})) == 1
    monkeypatch.setattr(lf, "notes", lambda: [_write(tmp_path, "stores 3.87<!--fig:size_mb/1000--> GB")])
    assert not lf.too_precise({"size_mb": 10.0}) and lf.too_precise({"size_mb": 11.0})  # in the unit shown


def test_disagreements_use_the_tolerance_and_a_fresh_run_only_needs_the_range(tmp_path, monkeypatch):
    page = _write(tmp_path, "93.0<!--fig:acc-->% and 88–98<!--fig:blind range-->%")
    monkeypatch.setattr(lf, "notes", lambda: [page])
    tols = {"acc": 2.0, "blind": 5.0}
    assert not lf.disagreements({"acc": 91.5, "blind": 93.0}, tols=tols)
    wrong = lf.disagreements({"acc": 90.5, "blind": 94.0}, tols=tols)
    assert len(wrong) == 2 and "90.5 ± 2 (its tolerance)" in wrong[0] and "88–98 quotes 'blind'" in wrong[1]
    # a fresh run lands anywhere within the tolerance of the snapshot: the range must hold its value only
    assert not lf.disagreements({"acc": 91.5, "blind": 97.0}, "01", tols, fresh=True)
    assert lf.disagreements({"acc": 91.5, "blind": 98.5}, "01", tols, fresh=True)


def test_a_fresh_run_reproduces_the_snapshot_within_the_tolerance():
    snap = {
        "acc": {"lesson": "05", "value": 93.0, "tol": 2.0, "varies": False},
        "bytes": {"lesson": "05", "value": 2406504.0, "tol": 0.0, "varies": False},
        "seconds": {"lesson": "05", "value": 1.0, "tol": None, "varies": True},
        "other": {"lesson": "04", "value": 1.0, "tol": 0.0, "varies": False},
    }
    row = lambda key, value, tol=0.0, varies=False: dict(key=key, value=value, tol=tol, varies=varies)  # noqa: E731
    good = [row("acc", 91.5, 2.0), row("bytes", 2406504.0), row("seconds", 9.0, None, True), row("other", 5.0)]
    assert lf.not_reproduced(good, snap, "05") == []
    bad = [row("acc", 90.5, 2.0), row("bytes", 2406505.0), row("seconds", 9.0, None, True)]
    assert [d.split(" ")[0] for d in lf.not_reproduced(bad, snap, "05")] == ["acc", "bytes"]
    (changed,) = lf.not_reproduced([row("acc", 93.0, 3.0)], snap, "05")
    assert "tolerance of ±3, the snapshot ±2.0" in changed


def test_a_percentage_near_100_is_quoted_up_to_100():
    """A share's tolerance cannot take it past 100% (or below 0): 99.2% ± 1 is within 98–100, not 98.2–100.2."""
    q = lf.Quote("x.md", 1, "100", "acc", 1.0, "98")
    assert q.agrees(99.2, tol=1.0, bounds=(0.0, 100.0)) and not q.agrees(99.2, tol=1.0)
    assert not q.agrees(97.5, tol=1.0, bounds=(0.0, 100.0))  # 96.5 is below the range
    snap = {"acc": {"value": 99.2, "tol": 1.0, "unit": "%"}, "mb": {"value": 3.0, "unit": "MB"}}
    assert lf.bounds(snap) == {"acc": (0.0, 100.0)}
