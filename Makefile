# The course's commands. Each sets up its own environment on first use (a virtual environment in
# .venv with the pinned versions of requirements.txt), so a fresh clone needs nothing else.
#   make lab        open JupyterLab on the student notebooks (what a learner runs to take the course locally)
#   make test       unit tests + notebook tests (what CI runs), on every core (TEST_JOBS=1: one process)
#   make test-fast  the tests that neither execute notebooks nor train models (about a minute)
#   make bench      only the benchmarks (ratios against bitsandbytes, measured side by side)
#   make check-model  re-measure the course model's card: a LoRA fine-tune learns the task (about a minute)
#   make lint       ruff: lint and format check of the code, tests, tools and solution notebooks
#   make format     ruff: fix what can be fixed and format
#   make drift      fast tests + notebooks in the environments pinned in drift/ (Colab's, the newest)
#   make course     execute every solution notebook; executed copies and SUMMARY.md in course-output/
#   make nbval      nbval over the solutions: they run, and the outputs they store are reproduced
#   make notebooks  regenerate the student notebooks, public tests and autograders from solutions/
#   make grade SUBMISSIONS=folder   grade <student>/<lesson>.ipynb files in a sandbox: grades/gradebook.csv
#   make slides     lecture notes -> reveal.js slide decks in build/slides/, one idea per slide, offline
#   make site       the course as a website in build/site/ (from course-output/; runs make course if a copy is missing)
# make test and make grade also need system packages (bubblewrap; Chromium for the site's browser test):
# tools/system_deps.sh installs what is missing with apt (as root or through password-less sudo) or stops
# at once with the one command to run; silent when they are there.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup lab system-deps-test test test-fast bench check-model lint format drift course notebooks check-notebooks grade grade-merge slides site nbval clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -e .
	touch $(STAMP)

# the learner's command: the student notebooks in JupyterLab, with the course's kernel (.venv)
lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

SYSTEM_DEPS := bash tools/system_deps.sh

# The suite runs on TEST_JOBS processes (default: the usable cores, at most 4), each test's torch on one
# thread: two 1-thread notebooks side by side finish sooner than one after the other on 2 threads. Each
# lesson's notebook test stays whole on one worker, the longest first (tests/conftest.py). The website
# test starts, beside the workers, as soon as every lesson's notebook is executed, and builds the site
# from those notebooks (tools/run_tests.py). TEST_JOBS=1: one process.
TEST_JOBS ?= $(shell $(PYTHON) -c "import os; print(min(4, len(os.sched_getaffinity(0))))" 2>/dev/null || echo 1)
TEST_EXECUTED := build/test-executed

# first, so that a missing package stops the run before the environment is built
test: system-deps-test $(STAMP)
ifeq ($(TEST_JOBS),1)
	$(BIN)/python -m pytest -m "not model_card"
else
	rm -rf $(TEST_EXECUTED) && mkdir -p $(TEST_EXECUTED)
	$(BIN)/python tools/run_tests.py --jobs $(TEST_JOBS) --executed $(TEST_EXECUTED)
endif

system-deps-test:
	@$(SYSTEM_DEPS) bwrap chromium

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not notebook and not slow and not benchmark and not model_card"

bench: $(STAMP)
	$(BIN)/python -m pytest -m benchmark

check-model: $(STAMP)
	$(BIN)/python -m pytest -m model_card

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

drift: $(STAMP)
	$(BIN)/python tools/drift.py $(DRIFT)

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

course: $(STAMP)
	$(BIN)/python tools/run_course.py

notebooks: $(STAMP)
	$(BIN)/python tools/build_notebooks.py

check-notebooks: $(STAMP)
	$(BIN)/python tools/build_notebooks.py --check

GRADES ?= grades
CPU_LIMIT ?= 600
MEMORY_LIMIT ?= 8
JOBS ?= 1
UNSAFE ?=

grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=path/to/submissions [GRADES=grades CPU_LIMIT=600 MEMORY_LIMIT=8 JOBS=1 SHARD=i/n UNSAFE=1]"; exit 2; }
	@$(if $(UNSAFE),:,$(SYSTEM_DEPS) bwrap)
	$(BIN)/python -m qlora_grading "$(SUBMISSIONS)" --out "$(GRADES)" --cpu-limit $(CPU_LIMIT) --memory-limit $(MEMORY_LIMIT) --jobs $(JOBS) $(if $(SHARD),--shard $(SHARD)) $(if $(UNSAFE),--unsafe)

# one gradebook from the GRADES folders of a class graded in shards (make grade SHARD=i/n GRADES=grades-i)
grade-merge: $(STAMP)
	@test -n "$(SHARDS)" || { echo "usage: make grade-merge SHARDS=\"grades-1 grades-2 ...\" [GRADES=grades]"; exit 2; }
	$(BIN)/python -m qlora_grading merge $(SHARDS) --out "$(GRADES)"

# the decks show the executed notebooks' figures: like the site, from course-output (make course if missing)
slides: $(STAMP)
	$(BIN)/python tools/build_slides.py --executed $(EXECUTED) --run-missing

EXECUTED ?= course-output

# nbval, the notebook test tool instructors know: every solution runs, and the cells tagged
# nbval-check-output (results the same on every machine) are compared with their stored outputs
nbval: $(STAMP)
	QLORA_COURSE_STATIC_WIDGETS=1 MPLBACKEND=Agg $(BIN)/python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider -q solutions/

site: $(STAMP)
	$(BIN)/python tools/build_site.py --executed $(EXECUTED) --run-missing

clean:
	rm -rf build course-output grades .pytest_cache
