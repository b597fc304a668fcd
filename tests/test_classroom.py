"""The classroom kit: the slide decks (`make grade` is tested against an adversarial class in test_grading.py;
the decks as an audience sees them, with the notebooks' figures, in test_site.py)."""

from __future__ import annotations

from conftest import ROOT


def test_every_notes_file_builds_as_a_slide_deck(tmp_path):
    """Each lesson's notes and the guide become a deck with its assets beside it, without executed notebooks
    (no figures then): a slide per key idea at least, the board plan's table in the title slide's notes."""
    import build_slides

    build_slides.install_assets(tmp_path)
    notes = sorted((ROOT / "lessons").glob("*.md"))
    assert len(notes) >= 8
    for note in notes:
        deck = build_slides.build(note, tmp_path, None)
        html = deck.read_text(encoding="utf-8")
        text = note.read_text(encoding="utf-8")
        assert "_assets/reveal.js/js/reveal.js" in html and "_assets/mathjax/tex-chtml.js" in html, deck.name
        ideas = len(build_slides.list_items(dict(build_slides.sections(text)[2]).get("Key ideas", ""))[1])
        assert html.count("<section") >= 1 + ideas, deck.name
        if "## Board plan" in text:
            assert "<table>" in html.split("</section>", 1)[0], f"{deck.name}: the board plan is not in the notes"
    for asset in ("reveal.js/css/reveal.css", "reveal.js/plugin/notes/notes.js", "mathjax/tex-chtml.js"):
        assert (tmp_path / "_assets" / asset).is_file(), asset
