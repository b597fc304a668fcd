"""The course website (``make site``), opened page by page in headless Chromium.

The site is built from the executed notebooks of the ``executed_dir`` fixture: the solution-notebook
tests of the same session put theirs there, and the fixture runs any that is missing;
``QLORA_COURSE_EXECUTED`` names another folder, such as ``course-output`` after ``make course``. Chromium is Debian's
(``/usr/bin/chromium``, or ``QLORA_COURSE_CHROMIUM``), driven by Playwright's Python package; nothing is
downloaded. Screenshots of the lesson pages go to ``build/site/_screenshots/`` for a reviewer to look at.
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


@pytest.fixture(scope="session")
def browser():
    chromium = os.environ.get("QLORA_COURSE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.fail(f"no Chromium for the browser test; {INSTALL}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


def visit(browser, url: str):
    """Open ``url`` in a fresh page; returns the page and a list that collects what went wrong on it."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
    page.goto(url, wait_until="load")
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


def test_every_page_loads_cleanly(site, base_url, browser):
    """No console error or failed request, every image loaded, every formula typeset, on every page."""
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if "_static" not in p.parts)
    assert {"index.html", "search.html"} <= set(pages)
    problems, typeset = [], 0
    for name in pages:
        page, errors = visit(browser, base_url + name)
        broken = page.evaluate(IMAGES)
        math = page.evaluate(MATH)
        page.close()
        typeset += math["math"]
        problems += [f"{name}: {e}" for e in errors]
        problems += [f"{name}: image did not load: {src}" for src in broken]
        if math["untypeset"] or math["raw"]:
            problems.append(f"{name}: {math['untypeset']} formulas not typeset, {math['raw']} raw TeX delimiters")
    assert not problems, "\n".join(problems)
    assert typeset > 100, f"only {typeset} typeset formulas in the whole site"


def test_search_finds_nf4(base_url, browser):
    page, errors = visit(browser, base_url + "search.html?q=NF4")
    page.wait_for_selector("#search-results ul.search li", timeout=20_000)
    hits = page.eval_on_selector_all("#search-results ul.search li a", "links => links.map(a => a.href)")
    page.close()
    assert not errors, errors
    assert any(h.endswith("solutions/02_nf4.html") for h in hits), hits
    assert any(h.endswith("lessons/02-nf4.html") for h in hits), hits


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
