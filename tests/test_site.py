"""The course website (``make site``), opened page by page in headless Chromium.

The site is built from the executed notebooks of the ``executed_dir`` fixture: the solution-notebook
tests of the same session put theirs there, and the fixture runs any that is missing;
``QLORA_COURSE_EXECUTED`` names another folder, such as ``course-output`` after ``make course``. Chromium is Debian's
(``/usr/bin/chromium``, or ``QLORA_COURSE_CHROMIUM``), driven by Playwright's Python package; nothing is
downloaded. Screenshots of the home page and every lesson, on a desktop (1280 px), a phone (390 px) and in
dark mode, go to ``build/site/_screenshots/`` for a reviewer to look at.

What a reader sees is checked in the browser, page by page and view by view (:func:`reader_problems`):
rendered text free of TeX and Markdown debris, no grading or solution-marker cells, nothing wider than a
phone's screen, no code block clipped on a desktop, readable colours in light and dark mode (WCAG contrast
ratio), alt text that describes each figure, long outputs in a box of their own. The same checks run on a
small page carrying every defect (``test_the_reader_checks_catch_each_defect``), so each can fail.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path

import nbformat
import pytest
from conftest import LESSONS, ROOT

from qlora_course import syllabus

pytestmark = pytest.mark.notebook

INSTALL = "install Chromium: apt-get install -y chromium"
SITE = ROOT / "build" / "site"
SHOTS = SITE / "_screenshots"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def site(executed_dir, tmp_path_factory) -> Path:
    """The site, built from this session's executed notebooks; a lesson the notebook tests did not run
    (this test alone, or ``-k``) is executed here first."""
    import build_site
    import run_course

    for lesson in build_site.missing_executed(executed_dir):
        run_course.execute(
            ROOT / syllabus.lesson(lesson).solution, tmp_path_factory.mktemp("figures") / "f.jsonl", executed_dir
        )
    build_site.build(executed_dir, SITE)  # raises on a Sphinx warning or a broken link
    SHOTS.mkdir()
    return SITE


@pytest.fixture(scope="session")
def base_url(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def chromium_path() -> str:
    chromium = os.environ.get("QLORA_COURSE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.fail(f"no Chromium for the browser test; {INSTALL}")
    return chromium


@pytest.fixture(scope="session")
def browser():
    chromium = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


SETTLED = """() => Promise.all(document.getAnimations()
  .filter(a => a.effect && a.effect.getComputedTiming().endTime !== Infinity)
  .map(a => a.finished.catch(() => null)))"""
# the views a reader has: (name, viewport width, colour scheme)
DESKTOP, PHONE, DARK = ("desktop", 1280, "light"), ("phone", 390, "light"), ("dark", 1280, "dark")


def visit(browser, url: str, view=DESKTOP):
    """Open ``url`` in a fresh page in ``view``; returns the page and a list that collects what went wrong."""
    _, width, scheme = view
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    problems: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
    page.goto(url, wait_until="load")
    page.evaluate(SETTLED)  # the theme fades colours in: measure them once they have arrived
    if page.locator(".math").count():
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20_000)
        page.evaluate("() => MathJax.startup.promise")
    return page, problems


IMAGES = """async () => {
  const imgs = [...document.images];
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  return imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'));
}"""
MATH = """() => {
  const untypeset = [...document.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container'));
  const main = document.querySelector('main').cloneNode(true);
  main.querySelectorAll('pre, code, mjx-container, script').forEach(e => e.remove());
  return {math: document.querySelectorAll('mjx-container').length, untypeset: untypeset.length,
          raw: (main.innerText.match(/\\$\\$|\\\\\\(|\\\\\\[/g) || []).length};
}"""


# One pass over a rendered page, in the browser: what a reader would see wrong. Thresholds: WCAG AA
# contrast (4.5, or 3 for large text); an output taller than TALL px must scroll in its own box.
READER = (Path(__file__).parent / "site_reader.js").read_text()
# each check in the view where a reader meets the defect (the text and the cells are the same in all three)
CHECKS = {
    "desktop": ["alt", "clipped", "contrast", "debris", "grading", "tall"],
    "phone": ["overflow"],
    "dark": ["contrast"],
}
TALL = 1000  # px: more than a screen of one output, and the reader loses the thread


def reader_problems(page, view) -> list[str]:
    """What a reader sees wrong on ``page`` (open in ``view``): each problem one line."""
    checks = CHECKS[view[0]]
    found = page.evaluate(READER, [checks, TALL])
    return [f"{view[0]}: {kind}: {item}" for kind in checks for item in found[kind]]


def _read_pages(browser, base_url: str, pages: list[str], view, shots: set[str]) -> tuple[list[str], int]:
    """Every page in one view: what went wrong, and how many formulas were typeset (desktop only)."""
    problems, typeset = [], 0
    for name in pages:
        page, errors = visit(browser, base_url + name, view)
        problems += [f"{name}: {view[0]}: {e}" for e in errors] + [f"{name}: {p}" for p in reader_problems(page, view)]
        if view == DESKTOP:
            problems += [f"{name}: image did not load: {src}" for src in page.evaluate(IMAGES)]
            math = page.evaluate(MATH)
            typeset += math["math"]
            if math["untypeset"] or math["raw"]:
                problems.append(f"{name}: {math['untypeset']} formulas not typeset, {math['raw']} raw TeX delimiters")
        if name in shots:
            page.screenshot(path=str(SHOTS / f"{Path(name).stem}-{view[0]}.png"))
        page.close()
    return problems, typeset


def test_every_page_loads_cleanly_and_reads_right_in_every_view(site, base_url):
    """Every page, on a desktop, a phone and in dark mode: no console error or failed request, every image
    loaded, every formula typeset, and :func:`reader_problems` finds nothing. Screenshots of the home page
    and the lessons in each view. The three views run side by side, each in its own Chromium (Playwright's
    synchronous API wants one instance per thread)."""
    from playwright.sync_api import sync_playwright

    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if "_static" not in p.parts)
    assert {"index.html", "search.html"} <= set(pages)
    shots = {"index.html"} | {f"solutions/{lesson}.html" for lesson in LESSONS}
    results: dict[str, tuple[list[str], int] | BaseException] = {}

    def read(view):
        try:
            with sync_playwright() as p:
                b = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS)
                results[view[0]] = _read_pages(b, base_url, pages, view, shots)
                b.close()
        except BaseException as err:  # noqa: BLE001 - reported below, in the test's thread
            results[view[0]] = err

    threads = [threading.Thread(target=read, args=(view,)) for view in (DESKTOP, PHONE, DARK)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for outcome in results.values():
        if isinstance(outcome, BaseException):
            raise outcome
    problems = [p for view in ("desktop", "phone", "dark") for p in results[view][0]]
    assert not problems, "\n".join(problems)
    typeset = results["desktop"][1]
    assert typeset > 100, f"only {typeset} typeset formulas in the whole site"


BROKEN_PAGE = Path(__file__).parent / "site_fixtures" / "broken.html"


def test_the_reader_checks_catch_each_defect(browser):
    """A page with one of each defect: every check names it, in the view where a reader meets it."""
    url = BROKEN_PAGE.as_uri()
    found = {}
    for view in (DESKTOP, PHONE):
        page = browser.new_page(viewport={"width": view[1], "height": 900}, color_scheme=view[2])
        page.goto(url)
        found[view[0]] = "\n".join(reader_problems(page, view))
        page.close()
    desktop, phone = found["desktop"], found["phone"]
    for expected in [
        "debris: 2 × a stray $",
        "debris: 2 × **",
        "debris: 1 × \\( or \\[",
        "debris: 1 × a TeX command",
    ]:
        assert expected in desktop, (expected, desktop)
    assert 'grading: "# BEGIN SOLUTION" in a visible code block' in desktop
    assert "clipped: a code block needs" in desktop and "x = 1" in desktop
    assert 'contrast: "grey on white"' in desktop and 'contrast: "a note in the dark" 1.00:1' in desktop
    assert 'alt "a1b2c3d4e5f60718293a4b5c6d7e8f90.png"' in desktop
    assert "tall: an output 2400 px tall" in desktop
    assert "overflow: page is" in phone and "a paragraph wider than a phone" in phone
    assert "overflow" not in desktop and "contrast" not in phone  # each check in its own view
    page = browser.new_page(viewport={"width": 1280, "height": 900}, color_scheme="dark")
    page.goto(url)
    assert 'dark: contrast: "a note in the dark" 1.00:1' in "\n".join(reader_problems(page, DARK))
    page.close()


def test_lessons_lead_one_to_the_next(site):
    """Previous and next, at the foot of each lesson page, go through lessons 1–7 in order."""
    order = ["index.html"] + [f"solutions/{lesson}.html" for lesson in LESSONS]
    for k, lesson in enumerate(LESSONS, start=1):
        html = (site / "solutions" / f"{lesson}.html").read_text()
        prev = re.search(r'<a class="left-prev"\s+href="([^"]+)"', html)
        assert prev and (site / "solutions" / prev.group(1)).resolve() == (site / order[k - 1]).resolve(), lesson
        if k < len(LESSONS):
            nxt = re.search(r'<a class="right-next"\s+href="([^"]+)"', html)
            assert nxt and (site / "solutions" / nxt.group(1)).resolve() == (site / order[k + 1]).resolve(), lesson


def test_the_home_page_starts_a_learner(site, base_url, browser):
    """Who it is for, where to start (lesson 1, in Colab or with ``make lab``), and the time each lesson
    takes, on the first page; the maintainers' commands on a page of their own."""
    import build_site

    page, errors = visit(browser, base_url + "index.html")
    text = page.locator("main").inner_text()
    links = page.eval_on_selector_all("main a", "links => links.map(a => a.href)")
    page.close()
    assert not errors, errors
    for needed in ("Who it is for", "Start here", "make lab", "Syllabus", "CPU (2 cores)"):
        assert needed in text, needed
    assert build_site.colab_url(LESSONS[0]) in links
    assert any(h.endswith(f"solutions/{LESSONS[0]}.html") for h in links)
    for maintainer in ("bubblewrap", "make test", "TEST_JOBS"):
        assert maintainer not in text, f"the learner's home page shows {maintainer!r}"
    assert "make test" in re.sub(r"<[^>]+>", "", (site / "maintainers.html").read_text())


def test_search_finds_nf4(base_url, browser):
    page, errors = visit(browser, base_url + "search.html?q=NF4")
    page.wait_for_selector("#search-results ul.search li", timeout=20_000)
    hits = page.eval_on_selector_all("#search-results ul.search li a", "links => links.map(a => a.href)")
    page.close()
    assert not errors, errors
    assert any(h.endswith("solutions/02_nf4.html") for h in hits), hits
    assert any(h.endswith("lessons/02-nf4.html") for h in hits), hits


def test_search_previews_are_the_articles_words(base_url, browser):
    """A hit's preview holds the page's prose: no theme buttons, no TeX source."""
    page, errors = visit(browser, base_url + "search.html?q=absmax")
    page.wait_for_selector("#search-results ul.search li p.context", timeout=20_000)
    page.wait_for_timeout(2_000)  # previews arrive one page fetch at a time
    previews = page.eval_on_selector_all("#search-results ul.search li p.context", "ps => ps.map(p => p.innerText)")
    page.close()
    assert not errors, errors
    assert len(previews) >= 3, previews
    for text in previews:
        assert not re.search(r"Light Dark|System Settings|\\[(\[]|\$", text), text


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_page_shows_its_key_figure(site, base_url, browser, lesson):
    """The key figure is on the page, seen in the browser; screenshots of the top and of the figure."""
    key_figure = syllabus.lesson(lesson).key_figure  # printed the same on every machine
    page, errors = visit(browser, f"{base_url}solutions/{lesson}.html")
    page.screenshot(path=str(SHOTS / f"{lesson}-top.png"))
    figure = page.locator("main .cell_output").get_by_text(key_figure).first
    figure.scroll_into_view_if_needed()
    assert figure.is_visible(), f"{lesson}: {key_figure} is not visible"
    page.evaluate("el => el.scrollIntoView({block: 'center'})", figure.element_handle())
    page.screenshot(path=str(SHOTS / f"{lesson}.png"))
    images = page.locator("main .cell_output img").count()
    page.close()
    assert not errors, errors
    assert images > 0, f"{lesson}: no figure among the cell outputs"


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_page_links_colab_student_notebook_and_notes(site, lesson):
    import build_site

    html = (site / "solutions" / f"{lesson}.html").read_text()
    assert f'href="{build_site.colab_url(lesson)}"' in html
    assert 'src="../_images/colab-badge.svg"' in html
    download = re.search(rf'class="reference download internal"[^>]*href="([^"]*/{lesson}\.ipynb)"', html)
    assert download, f"{lesson}: no download link for the student notebook"
    assert (site / "solutions" / download.group(1)).read_bytes() == (
        ROOT / "notebooks" / f"{lesson}.ipynb"
    ).read_bytes()
    notes = build_site.notes_for(lesson)
    assert f'href="../lessons/{notes.removesuffix(".md")}.html"' in html


@pytest.mark.parametrize("lesson", LESSONS)
def test_static_sliders_carry_a_note(site, executed_dir, lesson):
    """Each slider that the headless run drew as a static figure says on the page how to run it live."""
    nb = nbformat.read(executed_dir / f"{lesson}.ipynb", as_version=4)
    texts = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    sliders = sum(t.count("(static figure at ") for t in texts)
    html = (site / "solutions" / f"{lesson}.html").read_text()
    assert html.count('class="admonition note static-widget"') >= sliders
    assert "(static figure at " not in html


def test_no_broken_links(site):
    import build_site

    assert build_site.check_links(site) == []


# --- the slide decks (make slides) ----------------------------------------------------------------------

DECK_READER = (Path(__file__).parent / "deck_reader.js").read_text()
FIRST_FIGURE = (
    "() => [...document.querySelectorAll('.reveal .slides > section')].findIndex(s => s.querySelector('img'))"
)
MAX_WORDS = 45  # on one slide: a statement, a label or two; the detail is the speaker's


@pytest.fixture(scope="session")
def slides(site, executed_dir) -> Path:
    """The decks, built from the notes and this session's executed notebooks (after the site, which runs
    any lesson missing from ``executed_dir``)."""
    import build_slides

    out = ROOT / "build" / "slides"
    if out.exists():
        shutil.rmtree(out)
    build_slides.build_all(out, executed_dir)
    (out / "_screenshots").mkdir()
    return out


def deck_problems(page) -> dict:
    """Run the deck checks on an open deck: ``{"slides": n, "figures": n, "problems": [...]}``."""
    return page.evaluate(DECK_READER, MAX_WORDS)


def open_deck(browser, url: str):
    """Open a deck with the network cut off: any request that leaves the local server fails and is named."""
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    problems: list[str] = []
    page.route(
        re.compile(r"^(?!http://127\.0\.0\.1:|file:|data:).*"),
        lambda route: (problems.append(f"loads {route.request.url} from outside the build"), route.abort()),
    )
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
    page.goto(url, wait_until="load")
    page.wait_for_function(
        "() => window.Reveal && Reveal.isReady() && window.MathJax && MathJax.startup", timeout=20_000
    )
    page.evaluate("() => MathJax.startup.promise")
    return page, problems


def test_every_deck_projects_offline_one_idea_per_slide(slides, browser):
    """Each deck opens with no network (reveal.js and MathJax served from the build), its math typeset,
    every slide fitting the screen with at most MAX_WORDS words and speaker notes; each lesson's deck shows
    its notebook's figures (a lesson with few figures, like lesson 6, shows the one it has). Screenshots of
    each deck's title slide and first figure."""
    handler = functools.partial(_QuietHandler, directory=str(slides))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    decks = sorted(p.name for p in slides.glob("*.html"))
    lesson_decks = {Path(syllabus.lesson(les).notes).stem + ".html" for les in LESSONS}
    assert lesson_decks <= set(decks), decks
    problems = []
    try:
        for deck in decks:
            page, errors = open_deck(browser, f"http://127.0.0.1:{server.server_port}/{deck}")
            found = deck_problems(page)
            typeset = page.evaluate("() => document.querySelectorAll('mjx-container').length")
            problems += [f"{deck}: {p}" for p in errors + found["problems"]]
            if found["slides"] < 8:
                problems.append(f"{deck}: only {found['slides']} slides")
            if deck in lesson_decks and found["figures"] < 1:
                problems.append(f"{deck}: no figure from the lesson's notebook")
            source = (slides / deck).read_text()
            if re.search(r"class=[\"']math\b", source) and typeset < 1:
                problems.append(f"{deck}: its formulas are not typeset")
            page.screenshot(path=str(slides / "_screenshots" / f"{Path(deck).stem}-title.png"))
            first = page.evaluate(FIRST_FIGURE)
            if first > 0:
                page.evaluate(f"() => Reveal.slide({first})")
                page.wait_for_timeout(1_000)  # the slide transition
                page.screenshot(path=str(slides / "_screenshots" / f"{Path(deck).stem}-figure.png"))
            page.close()
    finally:
        server.shutdown()
        server.server_close()
    assert not problems, "\n".join(problems)


def test_the_deck_checks_catch_each_defect(browser):
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto((Path(__file__).parent / "site_fixtures" / "broken-deck.html").as_uri())
    found = "\n".join(deck_problems(page)["problems"])
    page.close()
    assert 'slide 1 "A wall of text": its content is' in found
    assert 'slide 1 "A wall of text": 53 words on one slide' in found
    assert 'slide 2 "Raw math \\(x^2\\)": "\\(" shown as text' in found
    assert 'slide 2 "Raw math \\(x^2\\)": no speaker notes' in found
    assert "image missing.png did not load" in found
