"""Build the course as a static website, with Sphinx, MyST-NB and the book theme (``make site``).

    make site     # or: python tools/build_site.py [--executed course-output] [--out build/site]

Pages: the README's learner part (who the course is for, where to start, the syllabus) as the home page,
each lesson's solved notebook with the outputs that ``make course`` computed, the lecture notes, the
instructor guide and the README's part for instructors and maintainers. The notebooks are not executed
again: the executed copies are read from ``--executed`` (``course-output/`` by default, as written by
``make course``; the notebook tests write theirs to ``build/test-executed/``). ``--run-missing`` runs
``make course`` first when a copy is missing.

Before Sphinx reads them, the sources are staged in ``build/site-src/`` with the repository's layout
(``solutions/``, ``lessons/``, ``notebooks/`` for the student notebooks' download links), so the notes'
links to ``../solutions/*.ipynb`` land on the rendered lesson pages. Links to other repository files
point to the repository on GitHub. In the notebooks, what only the grader needs is left out (otter's
markers, the exercises' test cells, the solution markers inside answers) and the Colab install code is
folded away; progress bars are dropped (a page shows results, not the wait), long outputs scroll in a box
of their own, sliders (drawn by headless runs as static figures) get a note that the live slider runs in
Colab or Jupyter, each figure gets the alt text its notebook recorded from its titles, and every lesson
page gets its Colab badge, a download link for the student notebook and a link to its notes.

The build is offline: the theme's assets ship in its wheel, MathJax 3 in the ``django-static-mathjax``
wheel, and the widget JavaScript that MyST-NB would take from a CDN is switched off. After the build,
:func:`check_links` checks every internal link, anchor, image and script of the built HTML (external
links are not fetched) and the build fails on a broken one.
"""

from __future__ import annotations

import argparse
import ast
import html
import json
import os
import re
import shutil
import sys
import time
import warnings
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat

from qlora_course import syllabus

ROOT = Path(__file__).resolve().parents[1]
SITE_CONF = ROOT / "tools" / "site"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
STATIC_NOTE = re.compile(
    r"^\(static figure at (\{.*\}); run the notebook in Jupyter or Colab to move the controls\)\n?", re.M
)
# what a notebook carries for the grader alone: the test cells otter reads (`""" # BEGIN TEST CONFIG`,
# `# HIDDEN` cases) and the solution markers inside an answer cell
TEST_CELL = re.compile(r'^\s*("""|\'\'\')\s*# BEGIN TEST CONFIG|^\s*# HIDDEN\b', re.M)
SOLUTION_MARKER = re.compile(r"^[ \t]*# (BEGIN|END) SOLUTION\b.*\n?", re.M)
# a cell's output taller than about this many lines of text scrolls in a box of that height on the site
LONG_OUTPUT_LINES = 30
# a relative Markdown link or image: [text](target) / ![alt](target); targets without spaces
MD_LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^)\s]+)\)")


def lessons() -> list[str]:
    return syllabus.names()


def notes_for(lesson: str) -> str | None:
    """The file name of a lesson's lecture notes (``01-lowrank-lora.md``), None when it has none yet."""
    notes = ROOT / syllabus.lesson(lesson).notes
    return notes.name if notes.is_file() else None


def repository() -> tuple[str, str]:
    """``owner/name`` and branch of the course's repository (``[tool.qlora-course]`` in pyproject.toml)."""
    from build_notebooks import course_settings

    return course_settings()


def colab_url(lesson: str) -> str:
    repo, branch = repository()
    return f"https://colab.research.google.com/github/{repo}/blob/{branch}/notebooks/{lesson}.ipynb"


# --- Markdown pages --------------------------------------------------------------------------------


def relink(markdown: str, page: str, site_pages: set[str]) -> str:
    """Rewrite the relative links of a repository Markdown file for its place in the site.

    ``page`` is the file's path in the repository (``README.md``, ``lessons/02-nf4.md``); the staged
    site keeps that layout, with the README as ``index.md``. Links to pages of the site stay (MyST turns
    them into page links), links to student notebooks become download links, links to any other file
    of the repository go to it on GitHub, and the Colab badge image is the site's local copy.
    """
    repo, branch = repository()
    here = Path(page).parent
    depth = len(here.parts)

    def site_path(target: str) -> str:
        return "../" * depth + target

    def swap(m: re.Match) -> str:
        bang, text, target = m.groups()
        if not bang:  # a badge: an image inside a link
            text = MD_LINK.sub(swap, text)
        if target == COLAB_BADGE:
            return f"{bang}[{text}]({site_path('_static/colab-badge.svg')})"
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            return f"{bang}[{text}]({target})"
        path, _, anchor = target.partition("#")
        resolved = os.path.normpath(here / path).replace(os.sep, "/")
        if resolved == "README.md":
            resolved = "index.md"
        if resolved in site_pages:
            rel = os.path.relpath(resolved, here or ".").replace(os.sep, "/")
            return f"{bang}[{text}]({rel}{'#' + anchor if anchor else ''})"
        if re.fullmatch(r"notebooks/[0-9][0-9]_\w+\.ipynb", resolved) and not bang:
            rel = os.path.relpath(resolved, here or ".").replace(os.sep, "/")
            return f"{{download}}`{text.replace('`', '')} <{rel}>`"
        if not (ROOT / resolved).exists():
            raise FileNotFoundError(f"{page} links to {target}, which is not in the repository")
        kind = "tree" if (ROOT / resolved).is_dir() else "blob"
        url = f"https://github.com/{repo}/{kind}/{branch}/{resolved}{'#' + anchor if anchor else ''}"
        return f"{bang}[{text}]({url})"

    out, in_code = [], False
    for line in markdown.splitlines(keepends=True):
        if line.lstrip().startswith("```"):
            in_code = not in_code
        out.append(line if in_code else MD_LINK.sub(swap, line))
    return display_math_blocks("".join(out))


def display_math_blocks(markdown: str) -> str:
    """Set each ``$$ ... $$`` that starts a line apart by blank lines, as MyST needs to see display math
    (GitHub also renders ``$$`` blocks written straight after a line of text, or after each other)."""
    lines = markdown.splitlines(keepends=True)
    out, in_code, in_math = [], False, False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("```") and not in_math:
            in_code = not in_code
        starts = not in_code and not in_math and stripped.startswith("$$")
        if starts and out and out[-1].strip():
            out.append("\n")
        out.append(line)
        if starts:
            in_math = stripped.count("$$") % 2 == 1
            ends = not in_math
        else:
            ends = in_math and stripped.endswith("$$")
            in_math = in_math and not ends
        if ends and i + 1 < len(lines) and lines[i + 1].strip():
            out.append("\n")
    return "".join(out)


MAINTAINERS = "## For instructors and maintainers\n"


def split_readme(readme: str) -> tuple[str, str]:
    """The README's learner part (up to "For instructors and maintainers") and the rest, as its own page."""
    learner, sep, rest = readme.partition(MAINTAINERS)
    if not sep:
        raise ValueError(f"README.md has no {MAINTAINERS.strip()!r} section: the site's home page ends there")
    title = "# For instructors and maintainers\n"
    return learner, title + re.sub(r"^###", "##", rest, flags=re.M)


def home_page(readme: str, site_pages: set[str]) -> str:
    """The README's learner part as the home page, with the site's table of contents (hidden: the
    sidebar shows it). Lessons come first, in order, so that "next" leads from lesson to lesson."""
    notes = sorted((ROOT / "lessons").glob("*.md"))

    def toctree(caption: str, entries: list[str]) -> str:
        return "\n```{toctree}\n:hidden:\n:caption: " + caption + "\n\n" + "\n".join(entries) + "\n```\n"

    learner, _ = split_readme(readme)
    return (
        relink(learner, "README.md", site_pages)
        + toctree("Lessons (solved, with outputs)", [f"solutions/{name}" for name in lessons()])
        + toctree("Lecture notes", [f"lessons/{p.stem}" for p in notes if p.name[:2].isdigit()])
        + toctree(
            "For instructors",
            [f"lessons/{p.stem}" for p in notes if not p.name[:2].isdigit()] + ["maintainers"],
        )
    )


# --- notebooks -------------------------------------------------------------------------------------


def _model(state: dict, ref: str) -> dict:
    return state.get(ref.removeprefix("IPY_MODEL_"), {})


def _progress_text(model: dict, state: dict) -> str | None:
    """The final line of a tqdm progress bar widget (an HBox of label, FloatProgress, numbers)."""
    children = [_model(state, ref) for ref in model.get("state", {}).get("children", [])]
    names = [child.get("model_name") for child in children]
    if "FloatProgressModel" not in names:
        return None
    parts = []
    for child in children:
        value = child.get("state", {}).get("value")
        if child.get("model_name") == "HTMLModel" and value:
            parts.append(html.unescape(re.sub(r"<[^>]+>", "", value)).replace("\u2007", " ").strip())
        elif child.get("model_name") == "FloatProgressModel":
            done = (value or 0) / (child["state"].get("max") or 1)
            parts.append("█" * round(10 * done) + " " * (10 - round(10 * done)))
    return " ".join(parts[:1]) + "|" + parts[1] + "| " + " ".join(parts[2:]) if len(parts) >= 2 else None


def _output_widgets(model: dict, state: dict) -> list[dict]:
    """The outputs held by Output widgets under a widget (what a live ``interact`` last drew)."""
    found = []
    if model.get("model_name") == "OutputModel":
        found += model.get("state", {}).get("outputs", [])
    for ref in model.get("state", {}).get("children", []):
        found += _output_widgets(_model(state, ref), state)
    return found


def static_note(lesson: str, settings: str) -> dict:
    """An output cell note saying that the figure above is drawn at fixed settings, live in Colab."""
    text = (
        f"In the notebook a slider controls this figure; here it is drawn once{settings}. "
        f'To move the slider, <a href="{colab_url(lesson)}">open the lesson in Colab</a> '
        "or run the notebook in Jupyter."
    )
    body = (
        f'<div class="admonition note static-widget"><p class="admonition-title">Static figure</p><p>{text}</p></div>'
    )
    return nbformat.v4.new_output("display_data", data={"text/html": body})


def _settings_text(values: str) -> str:
    try:
        parsed = ast.literal_eval(values)
    except (ValueError, SyntaxError):
        return ""
    return " at " + ", ".join(f"{k} = {v}" for k, v in parsed.items()) if parsed else ""


def static_outputs(output: dict, state: dict, lesson: str) -> list[dict]:
    """The outputs that replace one output on the website (itself, if it needs no change)."""
    data = output.get("data", {})
    if WIDGET_VIEW in data:
        model = state.get(data[WIDGET_VIEW].get("model_id", ""), {})
        if _progress_text(model, state) is not None:
            return []  # a progress bar: the page shows the result, not the wait
        shown = [nbformat.from_dict(o) for o in _output_widgets(model, state)]
        return shown + [static_note(lesson, "")] if shown else []
    if output.get("output_type") == "stream" and STATIC_NOTE.search(output.get("text", "")):
        # a slider drawn as a static figure by a headless run: the note follows its figure (next output)
        before, after, notes = [], output["text"], []
        while m := STATIC_NOTE.search(after):
            before.append(after[: m.start()])
            notes.append(_settings_text(m.group(1)))
            after = after[m.end() :]
        text = "".join(before) + after
        stream = [nbformat.v4.new_output("stream", name=output["name"], text=text)] if text.strip() else []
        return stream + [{"_static_note": s} for s in notes]
    return [output]


def reader_cells(cells: list) -> list:
    """The cells a reader of the website sees: without otter's raw markers and assignment config, the
    exercises' test cells (public and hidden) and the ``# BEGIN/END SOLUTION`` lines inside answers. The
    set-up cell (it installs the course in Colab) stays, with its code folded away (``hide-input``)."""
    out, in_tests = [], False
    for cell in cells:
        if cell.cell_type == "raw":
            marker = cell.source.strip()
            in_tests = marker.startswith("# BEGIN TESTS") or (in_tests and not marker.startswith("# END TESTS"))
            continue
        if in_tests or (cell.cell_type == "code" and TEST_CELL.search(cell.source)):
            continue
        if cell.cell_type == "code":
            cell.source = SOLUTION_MARKER.sub("", cell.source)
            if "google.colab" in cell.source:
                _tag(cell, "hide-input")
        out.append(cell)
    return out


def _tag(cell, tag: str) -> None:
    tags = cell.metadata.setdefault("tags", [])
    if tag not in tags:
        tags.append(tag)


def output_lines(outputs: list) -> int:
    """About how many lines of text a cell's outputs take on the page (a figure counts as 20)."""
    lines = 0
    for o in outputs:
        data = o.get("data", {})
        if o.get("output_type") == "stream":
            lines += o.get("text", "").count("\n") + 1
        elif any(k.startswith("image/") for k in data):
            lines += 20
        elif "text/html" in data:
            lines += max(
                1, data["text/html"].count("<tr"), data["text/html"].count("<p") + data["text/html"].count("<br")
            )
        elif "text/plain" in data:
            lines += data["text/plain"].count("\n") + 1
    return lines


def prepare_notebook(executed: Path, lesson: str) -> nbformat.NotebookNode:
    """The executed notebook as the website shows it (see the module docstring)."""
    nb = nbformat.read(executed, as_version=4)
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    nb.cells = reader_cells(nb.cells)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = cell.source.replace(COLAB_BADGE, "../_static/colab-badge.svg")
        if cell.cell_type != "code":
            continue
        outputs, pending = [], []
        for output in cell.outputs:
            for new in static_outputs(output, state, lesson):
                if "_static_note" in new:
                    pending.append(new["_static_note"])
                    continue
                outputs.append(new)
                if pending and new.get("output_type") == "display_data" and "image/png" in new.get("data", {}):
                    outputs.append(static_note(lesson, pending.pop(0)))
        outputs += [static_note(lesson, s) for s in pending]
        cell.outputs = outputs
        if output_lines(outputs) > LONG_OUTPUT_LINES:
            _tag(cell, "scroll-output")
    notes = notes_for(lesson)
    has_badge = "colab-badge.svg" in nb.cells[0].source if nb.cells else False
    badge = "" if has_badge else f"[![Open In Colab](../_static/colab-badge.svg)]({colab_url(lesson)}) "
    links = [
        f"{badge}This page is the **solved** notebook, with the outputs of `make course` (on a CPU).",
        f"To do the exercises yourself, [open the student notebook in Colab]({colab_url(lesson)}) or "
        f"{{download}}`download the student notebook <../notebooks/{lesson}.ipynb>` and run it in Jupyter.",
    ]
    if notes:
        title = next(
            (ln[2:].strip() for ln in (ROOT / "lessons" / notes).read_text().splitlines() if ln.startswith("# ")), notes
        )
        links.append(f"Lecture notes: [{title}](../lessons/{notes}).")
    box = ":::{admonition} Run it, or do the exercises\n:class: tip\n\n" + "\n".join(links) + "\n:::\n"
    cell = nbformat.v4.new_markdown_cell(box)
    if nb.nbformat_minor < 5:  # cell ids came with nbformat 4.5
        del cell["id"]
    nb.cells.insert(1 if nb.cells else 0, cell)
    return nb


# --- staging and building --------------------------------------------------------------------------


def missing_executed(executed: Path) -> list[str]:
    """The lessons without a complete executed copy in ``executed`` (absent, or stopped part way: a run
    that failed leaves cells that never ran)."""
    return [name for name in lessons() if unexecuted_cell(executed / f"{name}.ipynb") is not None]


def unexecuted_cell(path: Path) -> int | None:
    """The index of the first code cell that never ran (-1 for no such file), or None if all ran."""
    if not path.exists():
        return -1
    nb = nbformat.read(path, as_version=4)
    return next(
        (i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip() and not c.execution_count),
        None,
    )


def copy_mathjax(dest: Path) -> Path:
    """MathJax 3 from the ``django-static-mathjax`` wheel into ``dest`` (the site's and the slide decks'):
    the one component the pages load (``tex-chtml.js``), its fonts and the TeX extensions it may autoload."""
    import mathjax

    es5 = Path(list(mathjax.__path__)[0]) / "static" / "mathjax" / "es5"
    dest.mkdir(parents=True)
    shutil.copy2(es5 / "tex-chtml.js", dest)
    for sub in ("output/chtml/fonts/woff-v2", "input/tex/extensions"):
        shutil.copytree(es5 / sub, dest / sub)
    return dest


def require_executed(executed: Path, run_missing: bool, what: str) -> None:
    """Stop with the command to run unless ``executed`` holds a complete executed copy of every lesson;
    with ``run_missing``, run the course (``make course``) into it first when one is missing. ``what``
    names what needs them, for the messages ("the site", "the slides")."""
    missing = missing_executed(executed)
    if missing and run_missing:
        import run_course

        print(f"no complete executed copy of {', '.join(missing)} in {executed}: running the course", flush=True)
        if run_course.main(["--out", str(executed)]) != 0:
            raise RuntimeError(f"`make course` failed: see its report above; {what} not built")
        missing = missing_executed(executed)
    if missing:
        raise FileNotFoundError(
            f"no complete executed notebook for {', '.join(missing)} in {executed}: run `make course` for "
            f"{what} (or pass the folder where the notebook tests wrote theirs: --executed build/test-executed)"
        )


def stage(executed: Path, src: Path) -> Path:
    """Write the Sphinx sources (configuration, pages, notebooks, MathJax) into ``src``; returns it."""
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(SITE_CONF, src)
    copy_mathjax(src / "_static" / "mathjax")
    notes = sorted((ROOT / "lessons").glob("*.md"))
    site_pages = {"index.md", "maintainers.md"}
    site_pages |= {f"solutions/{n}.ipynb" for n in lessons()} | {f"lessons/{p.name}" for p in notes}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (src / "index.md").write_text(home_page(readme, site_pages), encoding="utf-8")
    maintainers = relink(split_readme(readme)[1], "README.md", site_pages)
    (src / "maintainers.md").write_text(maintainers, encoding="utf-8")
    (src / "lessons").mkdir()
    for p in notes:
        text = relink(p.read_text(encoding="utf-8"), f"lessons/{p.name}", site_pages)
        (src / "lessons" / p.name).write_text(text, encoding="utf-8")
    (src / "solutions").mkdir()
    (src / "notebooks").mkdir()
    for name in lessons():
        nbformat.write(prepare_notebook(executed / f"{name}.ipynb", name), src / "solutions" / f"{name}.ipynb")
        shutil.copy2(ROOT / "notebooks" / f"{name}.ipynb", src / "notebooks" / f"{name}.ipynb")
    return src


def sphinx_build(src: Path, out: Path, doctrees: Path) -> None:
    from sphinx.cmd.build import build_main

    repo, branch = repository()
    os.environ["QLORA_COURSE_SITE"] = json.dumps({"repository_url": f"https://github.com/{repo}", "branch": branch})
    if out.exists():
        shutil.rmtree(out)
    # -W: a warning (an unresolved cross-reference, a missing image) fails the build
    args = ["-b", "html", "-q", "-W", "--keep-going", "-d", str(doctrees), str(src), str(out)]
    with warnings.catch_warnings():  # the theme's and MyST's use of APIs that Sphinx 11 drops: not ours to fix
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        status = build_main(args)
    if status != 0:
        raise RuntimeError(f"sphinx-build failed: sphinx-build {' '.join(args)}")


# --- the offline link checker ----------------------------------------------------------------------


class _Page(HTMLParser):
    """The ids (anchors) of one HTML page and the URLs it links to or loads."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, url)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.ids |= {attrs[key] for key in ("id", "name") if attrs.get(key) and (key == "id" or tag == "a")}
        if tag == "link":  # a stylesheet, icon or preload is loaded; other <link>s only name a page
            rels = set((attrs.get("rel") or "").split())
            tag = "link-loaded" if rels & {"stylesheet", "icon", "preload", "modulepreload", "manifest"} else "link"
        self.refs += [(tag, key, attrs[key]) for key in ("href", "src") if attrs.get(key) is not None]


def figure_alts(nb) -> dict[str, str]:
    """``{sha256 of the PNG: alt text}`` of a notebook's figures, from the ``alt`` metadata the course's
    notebooks give each figure (:func:`qlora_course.notebook.describe_figures`). MyST-NB names each image
    file by that hash but reads no alt text from an output, so :func:`apply_alt_text` puts it on the pages."""
    import base64
    import hashlib

    alts = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            png, alt = o.get("data", {}).get("image/png"), o.get("metadata", {}).get("image/png", {}).get("alt")
            if png and alt:
                alts[hashlib.sha256(base64.b64decode(png)).hexdigest()] = alt
    return alts


IMG_TAG = re.compile(r"<img\b[^>]*>")


def apply_alt_text(site: Path, alts: dict[str, str]) -> int:
    """Give each ``<img>`` of the built pages whose file is a notebook figure its alt text; returns how
    many images got one."""
    done = 0

    def swap(m: re.Match) -> str:
        nonlocal done
        tag = m.group(0)
        src = re.search(r'src="[^"]*_images/([0-9a-f]{64})\.png"', tag)
        if not src or src.group(1) not in alts:
            return tag
        done += 1
        alt = html.escape(alts[src.group(1)], quote=True)
        return (
            re.sub(r'\balt="[^"]*"', f'alt="{alt}"', tag)
            if ' alt="' in tag
            else tag.replace("<img", f'<img alt="{alt}"', 1)
        )

    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        new = IMG_TAG.sub(swap, text)
        if new != text:
            page.write_text(new, encoding="utf-8")
    return done


def check_links(site: Path) -> list[str]:
    """Broken internal links of a built site: each ``href``/``src`` must name an existing file and each
    ``#anchor`` an id on its page. External links are not fetched, but a page may not *load* anything
    (script, stylesheet, image, font) from outside the site: the reader may be offline."""
    site = site.resolve()
    pages = {p: _Page() for p in sorted(site.rglob("*.html")) if "_static" not in p.relative_to(site).parts}
    for path, parser in pages.items():
        parser.feed(path.read_text(encoding="utf-8"))
    problems = []
    for path, parser in pages.items():
        name = path.relative_to(site).as_posix()
        for tag, attr, url in parser.refs:
            parts = urlsplit(url)
            if parts.scheme in ("http", "https") or url.startswith("//"):
                if tag not in ("a", "link"):
                    problems.append(f"{name}: <{tag} {attr}> loads {url} from the internet")
                continue
            if parts.scheme in ("mailto", "javascript", "data") or not (parts.path or parts.fragment):
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{name}: {url} -> no such file")
            elif parts.fragment and target in pages and unquote(parts.fragment) not in pages[target].ids:
                problems.append(f"{name}: {url} -> no #{unquote(parts.fragment)} on that page")
    return problems


def build(executed: Path, out: Path, run_missing: bool = False) -> Path:
    """Stage the sources, build the site into ``out`` and check its links; returns ``out/index.html``."""
    executed, out = executed.resolve(), out.resolve()
    require_executed(executed, run_missing, "the site")
    src = stage(executed, out.parent / f"{out.name}-src")
    sphinx_build(src, out, out.parent / f"{out.name}-doctrees")
    alts = {}
    for name in lessons():
        alts |= figure_alts(nbformat.read(src / "solutions" / f"{name}.ipynb", as_version=4))
    apply_alt_text(out, alts)
    problems = check_links(out)
    if problems:
        raise RuntimeError(f"{len(problems)} broken links in {out}:\n" + "\n".join(problems))
    return out / "index.html"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--executed", type=Path, default=ROOT / "course-output", help="folder of executed notebooks")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "site")
    ap.add_argument("--run-missing", action="store_true", help="run `make course` if an executed copy is missing")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    try:
        index = build(args.executed, args.out, args.run_missing)
    except (FileNotFoundError, RuntimeError) as err:
        print(err, file=sys.stderr)
        return 1
    print(f"site built in {time.perf_counter() - start:.0f} s: open {index}")
    print(f"or serve it: python -m http.server -d {index.parent}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
