"""Build a slide deck a lecturer can project from each lesson's lecture notes (``make slides``).

    make slides        # or: python tools/build_slides.py [--executed course-output] [--out build/slides]

Each ``lessons/*.md`` becomes ``build/slides/<name>.html``, a reveal.js deck with one idea per slide:

- the title slide: the lesson's title; its speaker notes hold the notes' introduction and the board plan;
- one slide per item of a list whose items open with a bold statement (the key ideas, the
  misconceptions, ...): the statement is the slide, with the item's display equations and, for a key idea
  that points to a section of the notebook (``§3``), that section's next figure from the executed notebook;
  the whole item is the speaker's notes;
- one slide per claim and per discussion question (the claim or question; the verdict or answer in the
  notes); one slide for the exercises and one for further reading (the names; the details in the notes);
- any other section: its heading and its first sentence, the rest in the notes.

Speaker notes open with the ``s`` key (reveal.js' notes plugin). Everything a deck loads is inside
``build/slides/``: reveal.js 3.9 comes from the RISE wheel (a pinned requirement), MathJax 3 from the
``django-static-mathjax`` wheel, as on the website, and figures are copied out of the executed notebooks
(``--executed``, by default ``course-output/`` as ``make course`` writes it; ``--run-missing`` runs the
course first when one is missing). A deck opened with no network shows everything, math typeset.
"""

from __future__ import annotations

import argparse
import base64
import html
import importlib.util
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = "_assets"
FIGURE_TAG = re.compile(r"<!--\s*fig:[^>]*-->")
SECTION_REF = re.compile(r"§(\d+)")
BOLD_LEAD = re.compile(r"^\*\*(.+?)\*\*\s*(.*)$", re.S)
ITALIC_LEAD = re.compile(r"^\*([^*].*?)\*(?!\*)\s*(.*)$", re.S)  # a discussion question: *Why ...?* answer


@dataclass
class Slide:
    """One slide: a heading, its body (HTML) and the speaker's notes (HTML)."""

    title: str
    body: str = ""
    notes: str = ""
    classes: list[str] = field(default_factory=list)


# --- Markdown to HTML, the math left for MathJax -----------------------------------------------------


def _markdown():
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    def math(content: str, options: dict) -> str:  # the plugin wraps it in span.math / div.math
        tex = html.escape(content)
        return f"\\[{tex}\\]" if options.get("display_mode") else f"\\({tex}\\)"

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    dollarmath_plugin(md, renderer=math, allow_digits=False)
    return md


_MD = None


def render(markdown: str, inline: bool = False) -> str:
    """HTML of a piece of the notes; TeX stays as ``\\(..\\)`` and ``\\[..\\]`` for MathJax."""
    global _MD
    _MD = _MD or _markdown()
    from build_site import display_math_blocks  # $$ blocks set apart, as the website does

    text = display_math_blocks(FIGURE_TAG.sub("", markdown))
    text = re.sub(r"\]\(\.\./", "](../../", text)  # links to ../solutions/... from build/slides/
    return _MD.renderInline(text) if inline else _MD.render(text)


# --- the notes, read as sections and list items ------------------------------------------------------


def sections(markdown: str) -> tuple[str, str, list[tuple[str, str]]]:
    """``(title, introduction, [(heading, body), ...])`` of a notes file: its ``#`` title, the text before
    the first ``##``, and each ``##`` section (``###`` subsections stay inside their section's body)."""
    lines = markdown.splitlines()
    title = next((ln[2:].strip() for ln in lines if ln.startswith("# ")), "")
    parts = re.split(r"^## +(.+)$", markdown, flags=re.M)
    intro = re.sub(r"^# .*$", "", parts[0], count=1, flags=re.M).strip()
    return title, intro, [(parts[i].strip(), parts[i + 1].strip()) for i in range(1, len(parts) - 1, 2)]


def list_items(body: str) -> tuple[str, list[str]]:
    """The text before a section's first top-level list, and each item of its lists (``-`` or ``1.``),
    with its continuation lines, unindented."""
    lead, items, current = [], [], None
    for line in body.splitlines():
        m = re.match(r"^(?:[-*]|\d+\.) +(.*)$", line)
        if m:
            current = [m.group(1)]
            items.append(current)
        elif current is not None and (line.startswith(" ") or not line.strip()):
            current.append(line.strip())
        elif current is None:
            lead.append(line)
        else:  # text after the list: part of the last item's notes
            current.append(line)
    return "\n".join(lead).strip(), ["\n".join(item).strip() for item in items]


def first_sentence(text: str, limit: int = 160) -> str:
    """The first sentence of ``text`` (Markdown), cut at ``limit`` characters on a word boundary."""
    flat = " ".join(text.split())
    m = re.match(r"(.+?[.?!])(\s|$)", flat)
    sentence = m.group(1) if m else flat
    return sentence if len(sentence) <= limit else sentence[:limit].rsplit(" ", 1)[0] + " …"


def label(item: str, words: int = 8) -> str:
    """A list item as one short line: its leading code span (an exercise's ``name(args)``), else its first
    ``words`` words, cut before a formula or emphasis that would be left open."""
    code = re.match(r"`[^`]+`", item)
    if code:
        return code.group(0)
    titled = re.match(r"^([^*\n]{0,60}?\*[^*]+\*)", item)  # a reading: authors, *Title*
    if titled and len(titled.group(1).split()) <= 14:
        return titled.group(1)
    head = " ".join(" ".join(item.split()).split(" ")[:words])
    head = re.split(r"[.;:](\s|$)", head)[0]
    for mark in ("$", "*"):
        if head.count(mark) % 2:
            head = head[: head.rindex(mark)].rstrip()
    return head + (" …" if len(head) < len(" ".join(item.split())) else "")


def display_math(text: str) -> list[str]:
    """The ``$$ ... $$`` blocks of an item, in order."""
    return [m.strip() for m in re.findall(r"\$\$(.+?)\$\$", text, flags=re.S)]


# --- figures from the executed notebook --------------------------------------------------------------


def notebook_figures(executed: Path) -> dict[int, list[tuple[bytes, str]]]:
    """``{section number: [(PNG bytes, alt text), ...]}`` of an executed notebook: each figure under the
    notebook's ``## N. ...`` heading it follows (section 0: before the first numbered one)."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    out: dict[int, list[tuple[bytes, str]]] = {}
    section = 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^## +(\d+)\.", cell.source, flags=re.M)
            if m:
                section = int(m.group(1))
        elif cell.cell_type == "code":
            for o in cell.get("outputs", []):
                png = o.get("data", {}).get("image/png")
                if png:
                    alt = o.get("metadata", {}).get("image/png", {}).get("alt", "")
                    out.setdefault(section, []).append((base64.b64decode(png), alt))
    return out


# --- slides from one notes file ----------------------------------------------------------------------

WHOLE_LIST = {"exercises": "Exercises", "further reading": "Further reading"}
ONE_PER_ITEM = ("claims", "discussion")


def slides_for(markdown: str, figures: dict[int, list[tuple[bytes, str]]], save_figure) -> list[Slide]:
    """The deck's slides; ``save_figure(png, alt)`` stores a figure and returns its ``<img>`` HTML."""
    title, intro, parts = sections(markdown)
    board = next((body for heading, body in parts if heading.lower().startswith("board plan")), "")
    deck = [
        Slide(
            title.removesuffix(": board plan"),
            "<p class='course'>QLoRA, from scratch</p><p class='hint'>Speaker notes: press S. Overview: press Esc.</p>",
            render(intro) + ("<h4>Board plan</h4>" + render(board) if board else ""),
            ["title-slide"],
        )
    ]
    used: set[tuple[int, int]] = set()

    def figure_for(item: str) -> str:
        for ref in SECTION_REF.findall(item):
            for k, (png, alt) in enumerate(figures.get(int(ref), [])):
                if (int(ref), k) not in used:
                    used.add((int(ref), k))
                    return save_figure(png, alt)
        return ""

    for heading, body in parts:
        key = heading.lower()
        if key.startswith("board plan"):
            continue
        lead, items = list_items(body)
        bold = [BOLD_LEAD.match(item) for item in items]
        if items and all(bold):
            for item, m in zip(items, bold, strict=True):
                statement = m.group(1).strip().rstrip(".")
                maths = "".join(render(f"$${t}$$") for t in display_math(item)[:2])
                picture = figure_for(item) if key.startswith("key ideas") else ""
                deck.append(Slide(render(statement, inline=True), maths + picture, render(item), [heading]))
        elif items and key.startswith(ONE_PER_ITEM):
            for item in items:
                question = ITALIC_LEAD.match(item)
                point = question.group(1) if question else first_sentence(item)
                deck.append(Slide(render(point, inline=True), f"<p class='kicker'>{heading}</p>", render(item)))
        elif items and key in WHOLE_LIST:
            names = "".join(f"<li>{render(label(item), inline=True)}</li>" for item in items)
            deck.append(Slide(WHOLE_LIST[key], f"<ul>{names}</ul>", render(body)))
        else:
            text = lead or body
            deck.append(
                Slide(render(heading, inline=True), f"<p>{render(first_sentence(text), inline=True)}</p>", render(body))
            )
    return deck


# --- the deck's HTML ---------------------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title}</title>
<link rel="stylesheet" href="{assets}/reveal.js/css/reveal.css">
<link rel="stylesheet" href="{assets}/reveal.js/css/theme/white.css">
<link rel="stylesheet" href="{assets}/deck.css">
<script>window.MathJax = {{tex: {{inlineMath: [["\\\\(", "\\\\)"]], displayMath: [["\\\\[", "\\\\]"]]}},
  startup: {{pageReady: () => MathJax.startup.defaultPageReady().then(() => Reveal.layout())}}}};</script>
<script src="{assets}/mathjax/tex-chtml.js" defer></script>
</head><body>
<div class="reveal"><div class="slides">
{slides}
</div></div>
<script src="{assets}/reveal.js/js/reveal.js"></script>
<script>Reveal.initialize({{hash: true, slideNumber: "c/t", center: false, width: 1280, height: 720, margin: 0.04,
  dependencies: [{{src: "{assets}/reveal.js/plugin/notes/notes.js", async: true}}]}});</script>
</body></html>
"""

DECK_CSS = """/* the course's slides: a heading, little text, a figure or an equation (tools/build_slides.py) */
.reveal { font-size: 30px; }
.reveal h2 { font-size: 1.35em; text-transform: none; line-height: 1.25; }
.reveal h1 { font-size: 1.8em; text-transform: none; }
.reveal .slides section.title-slide { display: flex !important; flex-direction: column; justify-content: center; }
.reveal p.hint { color: #666; font-size: 0.6em; margin-top: 2em; }
.reveal .slides section { text-align: left; height: 100%; }
.reveal p.course, .reveal p.kicker { color: #666; font-size: 0.7em; text-transform: uppercase; letter-spacing: 0.05em; }
.reveal img.figure { display: block; margin: 0.4em auto 0; max-height: 430px; max-width: 100%;
  border: 0; box-shadow: none; }
.reveal div.math { font-size: 0.8em; margin: 0.4em 0; }
.reveal ul { display: block; font-size: 0.8em; }
.reveal code { font-size: 0.9em; }
"""


def slide_html(slide: Slide) -> str:
    classes = " ".join(re.sub(r"\W+", "-", c.lower()).strip("-") for c in slide.classes)
    tag = "h1" if "title-slide" in slide.classes else "h2"
    notes = f"\n<aside class='notes'>{slide.notes}</aside>" if slide.notes.strip() else ""
    return f"<section class='{classes}'>\n<{tag}>{slide.title}</{tag}>\n{slide.body}{notes}\n</section>"


def _upstream(path: Path) -> Path:
    """reveal.js' own version of a file that RISE patched for its notebook page (the wheel keeps both, under
    names that differ from file to file: the original is the one without RISE's selectors)."""
    for candidate in (path, path.with_name(path.name + ".upstream"), path.with_name(path.name + ".patched")):
        text = candidate.read_text(errors="replace") if candidate.is_file() else ""
        if text and "notebook_app" not in text and "/*html {" not in text:
            return candidate
    raise RuntimeError(f"no unpatched copy of {path.name} in the RISE wheel")


def install_assets(out_dir: Path) -> Path:
    """Copy reveal.js (from the RISE wheel) and MathJax 3 into ``out_dir/_assets``; returns that folder."""
    from build_site import copy_mathjax

    rise = importlib.util.find_spec("rise")
    if rise is None:
        raise RuntimeError("reveal.js is missing: run `make setup` (it installs the RISE wheel, which carries it)")
    reveal = Path(rise.submodule_search_locations[0]) / "static" / "reveal.js"
    assets = out_dir / ASSETS
    if assets.exists():
        shutil.rmtree(assets)
    for part in (
        "css/reveal.css",
        "css/theme/white.css",
        "js/reveal.js",
        "plugin/notes/notes.js",
        "plugin/notes/notes.html",
    ):
        (assets / "reveal.js" / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(_upstream(reveal / part), assets / "reveal.js" / part)
    shutil.copytree(
        reveal / "lib" / "font" / "source-sans-pro", assets / "reveal.js" / "lib" / "font" / "source-sans-pro"
    )
    copy_mathjax(assets / "mathjax")  # as the website's
    (assets / "deck.css").write_text(DECK_CSS)
    return assets


def build(notes: Path, out_dir: Path, executed: Path | None = None) -> Path:
    """Build the deck of one notes file (figures from ``executed``, the lesson's executed notebook, if
    given); returns its path. Needs :func:`install_assets` to have run for ``out_dir``."""
    figures = notebook_figures(executed) if executed is not None else {}
    fig_dir = out_dir / notes.stem
    if fig_dir.exists():
        shutil.rmtree(fig_dir)
    saved = []

    def save_figure(png: bytes, alt: str) -> str:
        fig_dir.mkdir(parents=True, exist_ok=True)
        name = f"figure-{len(saved) + 1}.png"
        (fig_dir / name).write_bytes(png)
        saved.append(name)
        return f"<img class='figure' src='{notes.stem}/{name}' alt='{html.escape(alt or 'a figure of the lesson')}'>"

    slides = slides_for(notes.read_text(encoding="utf-8"), figures, save_figure)
    page = PAGE.format(
        title=html.escape(re.sub(r"<[^>]+>", "", slides[0].title)),
        assets=ASSETS,
        slides="\n".join(slide_html(s) for s in slides),
    )
    target = out_dir / f"{notes.stem}.html"
    target.write_text(page, encoding="utf-8")
    return target


def lesson_of(notes: Path):
    from qlora_course import syllabus

    return next((les for les in syllabus.LESSONS if Path(les.notes).name == notes.name), None)


def build_all(out_dir: Path = ROOT / "build" / "slides", executed: Path = ROOT / "course-output", run_missing=False):
    """Every deck; the lessons' figures from the executed notebooks in ``executed``."""
    notes = sorted((ROOT / "lessons").glob("*.md"))
    if not notes:
        raise FileNotFoundError(f"no lecture notes in {ROOT / 'lessons'}")
    sys.path.insert(0, str(ROOT / "tools"))
    import build_site

    build_site.require_executed(executed, run_missing, "the slides (they show its figures)")
    out_dir.mkdir(parents=True, exist_ok=True)
    install_assets(out_dir)
    decks = []
    for n in notes:
        lesson = lesson_of(n)
        decks.append(build(n, out_dir, executed / f"{lesson.name}.ipynb" if lesson else None))
    return decks


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "slides")
    ap.add_argument("--executed", type=Path, default=ROOT / "course-output", help="folder of executed notebooks")
    ap.add_argument("--run-missing", action="store_true", help="run `make course` if an executed copy is missing")
    args = ap.parse_args(argv)
    try:
        decks = build_all(args.out, args.executed, args.run_missing)
    except (FileNotFoundError, RuntimeError) as err:
        print(err, file=sys.stderr)
        return 1
    for d in decks:
        print(d.relative_to(ROOT) if d.is_relative_to(ROOT) else d)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
