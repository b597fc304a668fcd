"""The slide builder's reading of lecture notes (``tools/build_slides.py``; the built decks are opened in
the browser by test_site.py)."""

import build_slides
import pytest

NOTES = """# Lesson 9 — Toy: board plan

Teach from the notebook. Measured numbers are 12<!--fig:x--> here.

## Key ideas

1. **The base is frozen.** Only $A$ and $B$ train:
   $$h = W x + BAx$$
   See [§2](../solutions/09_toy.ipynb).
2. **Rank is small.** Nothing to show (§7).

## Board plan

| min | what |
|---|---|
| 0–5 | draw $W$ |

## Exercises

1. `merge(w)`: the merged weight. Test: equal to PEFT's.

## Discussion questions

1. *Why freeze the base?* Memory: no gradients for $W$.

## Further reading

- Hu et al., *LoRA* (2021).
"""


def test_each_key_idea_is_a_slide_with_its_equation_figure_and_notes():
    saved = []

    def save(png, alt):
        saved.append((png, alt))
        return f"<img src='f{len(saved)}.png' alt='{alt}'>"

    figures = {2: [(b"png-a", "the first figure of section 2"), (b"png-b", "its second")]}
    deck = build_slides.slides_for(NOTES, figures, save)
    titles = [s.title for s in deck]
    assert titles == [
        "Lesson 9 — Toy",
        "The base is frozen",
        "Rank is small",
        "Exercises",
        "Why freeze the base?",
        "Further reading",
    ]
    title, frozen, small, exercises, question, reading = deck
    assert "<h4>Board plan</h4>" in title.notes and "\\(W\\)" in title.notes  # the board plan: notes only
    assert "fig:" not in title.notes and "12" in title.notes
    assert "\\[h = W x + BAx\\]" in frozen.body and "<img src='f1.png'" in frozen.body
    assert (
        "Only" in frozen.notes and "\\[h = W x + BAx\\]" in frozen.notes and "$" not in frozen.notes
    )  # the whole item, for the speaker
    assert saved == [(b"png-a", "the first figure of section 2")]
    assert "<img" not in small.body  # §7 has no figure
    assert "<code>merge(w)</code>" in exercises.body and "equal to PEFT" in exercises.notes
    assert "Memory: no gradients" in question.notes and "Memory" not in question.body
    assert "../../solutions/09_toy.ipynb" in frozen.notes  # links reach the notebooks from build/slides/


def test_a_slide_renders_with_its_notes_aside():
    html = build_slides.slide_html(
        build_slides.Slide("A <em>point</em>", "<p>body</p>", "<p>say this</p>", ["Key ideas"])
    )
    assert html.startswith("<section class='key-ideas'>\n<h2>A <em>point</em></h2>")
    assert "<aside class='notes'><p>say this</p></aside>" in html


def test_missing_executed_notebooks_stop_the_build_with_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="make course"):
        build_slides.build_all(tmp_path / "slides", tmp_path / "nothing-here")
