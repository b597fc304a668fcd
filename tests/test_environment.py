"""One set of versions: requirements.txt, environment.yml and the Colab extra must agree."""

import re
import tomllib

import yaml
from conftest import ROOT


def pins(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)", line)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def requirements():
    return pins((ROOT / "requirements.txt").read_text().splitlines())


def test_environment_yml_repeats_requirements_exactly():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert pins(pip_section) == requirements()
    assert "-e ." in pip_section
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=" + python.split("=")[1]


def test_colab_extra_uses_the_pinned_versions_and_never_pins_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    colab = pins(project["optional-dependencies"]["colab"])
    assert set(colab) == {"bitsandbytes", "trl", "otter-grader"}
    assert all(requirements()[name] == version for name, version in colab.items())
    # the package's own requirements stay loose so that Colab keeps its torch
    assert not any("==" in dep for dep in project["dependencies"])


def test_the_pinned_versions_are_the_installed_ones():
    from importlib.metadata import version

    for name, pinned in requirements().items():
        assert version(name).split("+")[0] == pinned, f"{name}: installed {version(name)}, pinned {pinned}"
