"""The classroom kit: the slide decks (`make grade` is tested against an adversarial class in test_grading.py)."""

from __future__ import annotations

import pytest
from conftest import ROOT

pytestmark = pytest.mark.notebook  # grading executes notebooks


def test_every_lesson_builds_as_a_slide_deck(tmp_path):
    import build_slides

    decks = build_slides.build_all(tmp_path)
    notes = sorted((ROOT / "lessons").glob("*.md"))
    assert [d.stem for d in decks] == [n.stem for n in notes] and len(notes) >= 5
    for deck, note in zip(decks, notes, strict=True):
        html = deck.read_text(encoding="utf-8")
        sections = sum(1 for line in note.read_text(encoding="utf-8").splitlines() if line.startswith("## "))
        assert "reveal.js" in html and html.count("<section") >= sections + 1, deck.name
        assert "<table" in html or "|" not in note.read_text(encoding="utf-8"), f"{deck.name}: tables lost"
