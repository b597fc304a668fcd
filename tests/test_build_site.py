"""The site builder's parts that need no executed notebook: link rewriting, display math, widgets, the
offline link checker (``tools/build_site.py``; the built site itself is tested in test_site.py)."""

import build_site
import nbformat
import pytest


def test_readme_links_become_pages_downloads_and_repository_links():
    pages = {"index.md", "solutions/01_lowrank_lora.ipynb", "lessons/01-lowrank-lora.md"}
    readme = (
        "[solved](solutions/01_lowrank_lora.ipynb) [notes](lessons/01-lowrank-lora.md) "
        "[01_lowrank_lora](notebooks/01_lowrank_lora.ipynb) [guide](CONTRIBUTING.md) "
        f"[![Open In Colab]({build_site.COLAB_BADGE})](https://colab.research.google.com/x.ipynb)"
    )
    out = build_site.relink(readme, "README.md", pages)
    repo, branch = build_site.repository()
    assert "[solved](solutions/01_lowrank_lora.ipynb)" in out
    assert "[notes](lessons/01-lowrank-lora.md)" in out
    assert "{download}`01_lowrank_lora <notebooks/01_lowrank_lora.ipynb>`" in out
    assert f"[guide](https://github.com/{repo}/blob/{branch}/CONTRIBUTING.md)" in out
    assert "[![Open In Colab](_static/colab-badge.svg)](https://colab.research.google.com/x.ipynb)" in out


def test_notes_links_keep_their_place_and_anchor():
    pages = {"index.md", "solutions/02_nf4.ipynb", "lessons/02-nf4.md"}
    notes = "[§2](../solutions/02_nf4.ipynb#2-the-code) [README](../README.md) [student](../notebooks/02_nf4.ipynb)"
    out = build_site.relink(notes, "lessons/02-nf4.md", pages)
    assert "[§2](../solutions/02_nf4.ipynb#2-the-code)" in out
    assert "[README](../index.md)" in out
    assert "{download}`student <../notebooks/02_nf4.ipynb>`" in out


def test_a_link_to_a_file_that_does_not_exist_stops_the_build():
    with pytest.raises(FileNotFoundError, match="no-such-file.md"):
        build_site.relink("[x](no-such-file.md)", "README.md", {"index.md"})


def test_code_blocks_are_left_alone():
    text = "```bash\n[x](no-such-file.md)\n$$\n```\n"
    assert build_site.relink(text, "README.md", {"index.md"}) == text


def test_display_math_gets_its_own_paragraph():
    text = "With $\\delta$:\n$$a = 1;\n  b = 2$$\n$$c = 3$$\nIn code: x.\n"
    assert (
        build_site.display_math_blocks(text) == "With $\\delta$:\n\n$$a = 1;\n  b = 2$$\n\n$$c = 3$$\n\nIn code: x.\n"
    )


def _widget_state(models: dict) -> dict:
    return {mid: {"model_name": name, "state": state} for mid, (name, state) in models.items()}


def test_a_progress_bar_is_left_out():
    state = _widget_state(
        {
            "bar": ("HBoxModel", {"children": ["IPY_MODEL_a", "IPY_MODEL_b", "IPY_MODEL_c"]}),
            "a": ("HTMLModel", {"value": "Loading\u2007weights:\u2007\u200798%"}),
            "b": ("FloatProgressModel", {"value": 2933.0, "max": 3000.0}),
            "c": ("HTMLModel", {"value": "\u20072933/3000\u2007[00:00&lt;00:00]"}),
        }
    )
    view = nbformat.v4.new_output("display_data", data={build_site.WIDGET_VIEW: {"model_id": "bar"}})
    assert build_site.static_outputs(view, state, "01_lowrank_lora") == []


def _cell(kind: str, source: str, outputs=()):
    if kind == "code":
        cell = nbformat.v4.new_code_cell(source)
        cell.outputs = list(outputs)
        return cell
    return nbformat.v4.new_raw_cell(source) if kind == "raw" else nbformat.v4.new_markdown_cell(source)


def test_the_reader_sees_no_grading_cells_and_no_solution_markers():
    cells = [
        _cell("markdown", "# Lesson"),
        _cell("raw", "# ASSIGNMENT CONFIG\nrequirements: x"),
        _cell("code", 'import sys\nif "google.colab" in sys.modules:\n    pass\nimport otter'),
        _cell("raw", "# BEGIN QUESTION\nname: f"),
        _cell("markdown", "**Exercise 1.** Write `f`."),
        _cell("raw", "# BEGIN SOLUTION"),
        _cell("code", "def f(x):\n    # BEGIN SOLUTION\n    return x\n    # END SOLUTION\n"),
        _cell("raw", "# END SOLUTION"),
        _cell("raw", "# BEGIN TESTS"),
        _cell("code", '""" # BEGIN TEST CONFIG\npoints: 1\n"""  # END TEST CONFIG\nassert f(1) == 1'),
        _cell("code", "# HIDDEN\nassert f(2) == 2"),
        _cell("raw", "# END TESTS"),
        _cell("raw", "# END QUESTION"),
        _cell("code", "print(f(3))"),
        _cell("code", "# HIDDEN a stray test outside the markers\nassert True"),
    ]
    shown = build_site.reader_cells(cells)
    assert [c.cell_type for c in shown] == ["markdown", "code", "markdown", "code", "code"]
    assert shown[1].metadata["tags"] == ["hide-input"]  # the set-up cell: folded, not gone
    assert shown[3].source == "def f(x):\n    return x\n"
    assert shown[4].source == "print(f(3))"


def test_a_long_output_scrolls_in_its_own_box(tmp_path):
    nb = nbformat.v4.new_notebook()
    long = nbformat.v4.new_output("stream", name="stdout", text="line\n" * 60)
    short = nbformat.v4.new_output("stream", name="stdout", text="one line\n")
    nb.cells = [_cell("markdown", "# Lesson"), _cell("code", "log()", [long]), _cell("code", "x", [short])]
    nbformat.write(nb, tmp_path / "01_lowrank_lora.ipynb")
    out = build_site.prepare_notebook(tmp_path / "01_lowrank_lora.ipynb", "01_lowrank_lora")
    assert out.cells[2].metadata.get("tags") == ["scroll-output"]
    assert "tags" not in out.cells[3].metadata


def test_the_home_page_is_the_readmes_learner_part():
    readme = (
        "# Course\n\n## Start here\nmake lab\n\n## For instructors and maintainers\n\n### The two commands\nmake test\n"
    )
    learner, rest = build_site.split_readme(readme)
    assert "make lab" in learner and "make test" not in learner
    assert rest.startswith("# For instructors and maintainers\n") and "\n## The two commands\n" in rest
    with pytest.raises(ValueError, match="For instructors and maintainers"):
        build_site.split_readme("# Course\n## Start here\n")


def test_a_live_slider_shows_its_last_figure_and_a_note():
    figure = {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "<Figure>"}, "metadata": {}}
    state = _widget_state(
        {
            "box": ("VBoxModel", {"children": ["IPY_MODEL_s", "IPY_MODEL_o"]}),
            "s": ("IntSliderModel", {"value": 4}),
            "o": ("OutputModel", {"outputs": [figure]}),
        }
    )
    view = nbformat.v4.new_output("display_data", data={build_site.WIDGET_VIEW: {"model_id": "box"}})
    shown, note = build_site.static_outputs(view, state, "01_lowrank_lora")
    assert shown["data"]["image/png"] == "iVBOR"
    assert "static-widget" in note["data"]["text/html"]
    assert build_site.colab_url("01_lowrank_lora") in note["data"]["text/html"]


def test_a_headless_static_figure_gets_its_note_after_the_figure(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("show_rank()")
    cell.outputs = [
        nbformat.v4.new_output(
            "stream",
            name="stdout",
            text="before\n(static figure at {'r': 4}; run the notebook in Jupyter or Colab to move the controls)\n",
        ),
        nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure>"}),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# Lesson\n[![Open In Colab]({build_site.COLAB_BADGE})](x)"), cell]
    nbformat.write(nb, tmp_path / "01_lowrank_lora.ipynb")
    out = build_site.prepare_notebook(tmp_path / "01_lowrank_lora.ipynb", "01_lowrank_lora")
    kinds = [o.get("name") or next(iter(o["data"])) for o in out.cells[2].outputs]
    assert kinds == ["stdout", "image/png", "text/html"]
    assert out.cells[2].outputs[0]["text"] == "before\n"
    assert "drawn once at r = 4" in out.cells[2].outputs[2]["data"]["text/html"]
    assert "../_static/colab-badge.svg" in out.cells[0].source
    assert "{download}`download the student notebook <../notebooks/01_lowrank_lora.ipynb>`" in out.cells[1].source


def test_link_checker_finds_missing_files_anchors_and_internet_loads(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text(
        '<a href="sub/page.html#here">ok</a> <a href="sub/page.html#gone">anchor</a> <a href="nope.html">file</a>'
        '<a href="https://example.org">external, not fetched</a> <img src="https://example.org/x.png">'
        '<a href="#top">self</a><div id="top"></div>'
    )
    (tmp_path / "sub" / "page.html").write_text('<h2 id="here">x</h2><a href="../index.html">up</a>')
    problems = build_site.check_links(tmp_path)
    assert problems == [
        "index.html: sub/page.html#gone -> no #gone on that page",
        "index.html: nope.html -> no such file",
        "index.html: <img src> loads https://example.org/x.png from the internet",
    ]


def test_a_copy_that_stopped_part_way_counts_as_missing(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1", execution_count=1), nbformat.v4.new_code_cell("")]
    nbformat.write(nb, tmp_path / "done.ipynb")
    assert build_site.unexecuted_cell(tmp_path / "done.ipynb") is None  # an empty cell never runs
    nb.cells.append(nbformat.v4.new_code_cell("y = 2"))
    nbformat.write(nb, tmp_path / "stopped.ipynb")
    assert build_site.unexecuted_cell(tmp_path / "stopped.ipynb") == 2
    assert build_site.unexecuted_cell(tmp_path / "absent.ipynb") == -1


def test_figures_get_their_alt_text_on_the_pages(tmp_path):
    import base64
    import hashlib

    png = b"\x89PNG fake figure bytes"
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("plot()")
    cell.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={"image/png": base64.b64encode(png).decode()},
            metadata={"image/png": {"alt": 'Error against rank "r"'}},
        )
    ]
    nb.cells = [cell]
    digest = hashlib.sha256(png).hexdigest()
    assert build_site.figure_alts(nb) == {digest: 'Error against rank "r"'}
    page = tmp_path / "lesson.html"
    page.write_text(f'<img alt="../_images/{digest}.png" src="../_images/{digest}.png"><img src="logo.svg" alt="logo">')
    assert build_site.apply_alt_text(tmp_path, build_site.figure_alts(nb)) == 1
    assert page.read_text() == (
        f'<img alt="Error against rank &quot;r&quot;" src="../_images/{digest}.png"><img src="logo.svg" alt="logo">'
    )
