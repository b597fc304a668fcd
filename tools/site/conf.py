"""Sphinx configuration of the course website, copied into the staged sources by tools/build_site.py.

Everything the pages load is local: the theme's assets come with its wheel, MathJax 3 with the
``django-static-mathjax`` wheel (copied to ``_static/mathjax`` by the builder), and the notebooks'
widget JavaScript, which MyST-NB would load from a CDN, is switched off (the builder turns widgets into
static outputs first).
"""

import json
import os

_settings = json.loads(os.environ.get("QLORA_COURSE_SITE", "{}"))

project = "QLoRA, from scratch"
html_title = project
author = "the QLoRA course"
copyright = "the QLoRA course authors, Apache-2.0"

extensions = ["myst_nb"]
exclude_patterns = ["notebooks/**", "_build", "**.ipynb_checkpoints"]

# the notebooks were executed by `make course` (or the notebook tests): never run them again here
nb_execution_mode = "off"
nb_ipywidgets_js = {}
nb_merge_streams = True
# stderr holds only library notices (a FutureWarning, bitsandbytes' optional-kernel message), with local paths
nb_output_stderr = "remove"
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_js_files = ["course.js"]
html_favicon = "_static/favicon.svg"
html_copy_source = False
html_show_sourcelink = False
mathjax_path = "mathjax/tex-chtml.js"
html_context = {"default_mode": "auto"}  # light or dark as the reader's system is; the switch overrides it
html_theme_options = {
    "repository_url": _settings.get("repository_url", ""),
    "repository_branch": _settings.get("branch", "main"),
    "use_repository_button": bool(_settings.get("repository_url")),
    "use_download_button": False,
    "use_fullscreen_button": False,
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,
}
