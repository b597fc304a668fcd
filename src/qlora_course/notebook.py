"""The setup every course notebook runs first: versions, seed, device, compute dtype, profile."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import random
import re
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "NotebookEnv",
    "seed_everything",
    "package_versions",
    "setup_notebook",
    "static_widgets",
    "interactive",
    "figure_description",
    "describe_figures",
    "usable_cpus",
    "set_threads",
]

DEFAULT_PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "trl", "qlora-course")


@dataclass
class NotebookEnv:
    """What :func:`setup_notebook` chose: ``device`` ("cuda" or "cpu"), ``dtype`` and ``profile``."""

    device: str
    dtype: torch.dtype
    profile: str
    seed: int
    in_colab: bool


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so that a rerun gives the same numbers."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def package_versions(packages: tuple[str, ...] = DEFAULT_PACKAGES) -> dict[str, str]:
    """Installed version of each distribution, or ``"not installed"``."""
    out = {}
    for name in packages:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def setup_notebook(
    seed: int = 0, profile: str = "course-tiny", packages: tuple[str, ...] = DEFAULT_PACKAGES
) -> NotebookEnv:
    """Seed everything, pick device and dtype, and print one line each for versions and choices."""
    import sys

    seed_everything(seed)
    threads = set_threads()
    from .models import pick_device_and_dtype

    device, dtype = pick_device_and_dtype()
    in_colab = "google.colab" in sys.modules
    if in_colab:
        _colab_widgets()
    describe_figures()
    versions = ", ".join(f"{k} {v}" for k, v in package_versions(packages).items())
    print(f"Python {platform.python_version()}; {versions}")
    where = (
        torch.cuda.get_device_name(0)
        if device == "cuda"
        else f"CPU, {threads} torch thread{'s' if threads > 1 else ''} of {os.cpu_count()} cores"
    )
    print(
        f"device: {device} [{where}], compute dtype: {str(dtype).removeprefix('torch.')}, "
        f"seed: {seed}, profile: {profile}{' (Colab)' if in_colab else ''}"
    )
    return NotebookEnv(device=device, dtype=dtype, profile=profile, seed=seed, in_colab=in_colab)


def _colab_widgets() -> None:
    """Let Colab render the course's widgets and progress bars.

    Colab's built-in widget manager renders ipywidgets 7 models; the course installs ipywidgets 8
    (otter-grader needs 8.1.5 or newer), whose models Colab renders with its CDN widget manager, which
    must be switched on in each session. Without it sliders and tqdm's bars would show as blank space.
    """
    try:
        from google.colab import output

        output.enable_custom_widget_manager()
    except (ImportError, AttributeError) as err:  # an older or newer Colab without this switch
        print(
            f"Could not switch on Colab's widget manager ({err}); if sliders do not appear, run "
            "os.environ['QLORA_COURSE_STATIC_WIDGETS'] = '1' to get static figures instead."
        )


def static_widgets() -> bool:
    """True when ``$QLORA_COURSE_STATIC_WIDGETS`` asks for static figures instead of live widgets (for a
    front end that cannot show ipywidgets 8, or a rendered, non-running copy of a notebook)."""
    return os.environ.get("QLORA_COURSE_STATIC_WIDGETS", "0").lower() in ("1", "true", "yes", "on")


def interactive(**controls):
    """Decorator like ``ipywidgets.interact``: the function's figure follows the ``controls`` (ipywidgets
    controls, one per keyword argument). With :func:`static_widgets` it is drawn once at the controls'
    starting values, with a note, so that the cell never shows blank space."""

    def decorate(fn):
        if static_widgets():
            values = {name: control.value for name, control in controls.items()}
            print(f"(static figure at {values}; run the notebook in Jupyter or Colab to move the controls)")
            fn(**values)
            return fn
        import ipywidgets as widgets

        return widgets.interact(fn, **controls)

    return decorate


def _plain(text: str) -> str:
    """A title as words: mathtext's ``$\\alpha/r$`` becomes ``alpha/r``."""
    text = re.sub(r"\\(mathrm|mathbf|mathit|text|operatorname)\{([^{}]*)\}", r"\2", text)
    text = re.sub(r"\\([A-Za-z]+)", r"\1", text)
    lines = [" ".join(line.replace("$", "").replace("{", "").replace("}", "").split()) for line in text.splitlines()]
    return "; ".join(line for line in lines if line)  # a title's lines read as one sentence


def figure_description(fig) -> str:
    """Alt text for a matplotlib figure, from its titles: the figure's suptitle, then each panel's title
    (or, for a panel without one, what it plots: "y against x"). ``""`` for a figure with neither."""
    parts = []
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None and suptitle.get_text().strip():
        parts.append(_plain(suptitle.get_text()))
    panels = []
    for ax in fig.axes:
        if not ax.get_visible() or ax.get_label() == "<colorbar>":
            continue
        title = next((ax.get_title(loc) for loc in ("center", "left", "right") if ax.get_title(loc).strip()), "")
        if title:
            panels.append(_plain(title))
        elif ax.get_ylabel().strip() and ax.get_xlabel().strip():
            panels.append(f"{_plain(ax.get_ylabel())} against {_plain(ax.get_xlabel())}")
    if panels:
        lead = "Panels" if len(panels) > 1 else ("Panel" if parts else "")
        parts.append(f"{lead}: " + "; ".join(panels) if lead else panels[0])
    return ". ".join(parts)


def describe_figures() -> bool:
    """In a notebook, give each matplotlib figure it shows alt text from :func:`figure_description` (the
    PNG output's ``alt`` metadata, which the course website puts on the image). False outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return False
    try:  # the inline backend registers its own PNG formatter when it loads: let it do so first
        import matplotlib_inline.backend_inline  # noqa: F401
    except ImportError:
        pass
    from matplotlib.figure import Figure

    png = shell.display_formatter.formatters["image/png"]
    try:
        draw = png.lookup_by_type(Figure)
    except KeyError:
        return False
    if getattr(draw, "_course_alt", False):
        return True

    def with_alt(fig):
        out = draw(fig)
        if out is None:
            return None
        data, meta = out if isinstance(out, tuple) else (out, {})
        alt = figure_description(fig)
        return (data, {**meta, "alt": alt}) if alt else (data, meta) if meta else data

    with_alt._course_alt = True
    png.for_type(Figure, with_alt)
    return True


def _cgroup_cpu_limit(root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs allowed by the process's cgroup quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), or None."""
    from pathlib import Path

    try:
        quota, period = Path(root, "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path(root, "cpu", "cpu.cfs_quota_us").read_text())
        period = int(Path(root, "cpu", "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cpus(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """How many CPUs this process may really use: the cores it is pinned to (affinity), capped by its
    container's CPU quota. ``os.cpu_count()``, which torch's default follows, counts the whole host."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = _cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cpus = min(cpus, max(1, int(limit)))
    return max(1, cpus)


def set_threads(n: int | None = None) -> int:
    """Give torch ``n`` threads (default ``$QLORA_COURSE_THREADS``, else :func:`usable_cpus`); returns it.

    More threads than usable cores make every kernel wait for the others: on a shared class server
    (many kernels on a few cores) set ``QLORA_COURSE_THREADS`` to the cores each user gets, often 1.
    """
    if n is None:
        env = os.environ.get("QLORA_COURSE_THREADS", "").strip()
        if env:
            if not env.isdigit() or int(env) < 1:
                raise ValueError(f"QLORA_COURSE_THREADS must be a positive whole number, got {env!r}")
            n = int(env)
        else:
            n = usable_cpus()
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the thread count must be a positive int, got {n!r}")
    torch.set_num_threads(n)
    return n
