"""qlora_grading: grading notebook exercises that no submission can forge.

It knows no lesson: a course describes its exercises (:class:`Exercise`, :class:`Course`) and the grader
runs each submission in a sandbox and scores it outside. One module per part:

- :mod:`qlora_grading.exercise` -- an exercise defined once: probe, reference, tolerance, finished objects
- :mod:`qlora_grading.wire`     -- results as JSON data, and the comparison with the reference's
- :mod:`qlora_grading.course`   -- what the grader needs of a course
- :mod:`qlora_grading.notebook` -- reading notebooks: code cells, ``grader.check`` cells
- :mod:`qlora_grading.runner`   -- the untrusted half, inside the sandbox
- :mod:`qlora_grading.sandbox`  -- bubblewrap, limits, the wall-clock backstop
- :mod:`qlora_grading.submissions` -- finding submissions in an instructor's folder
- :mod:`qlora_grading.gradebook` -- gradebook, feedback, STATUS
- :mod:`qlora_grading.grade`    -- scoring and the whole run
- :mod:`qlora_grading.cli`      -- ``python -m qlora_grading`` (``make grade``)

See "Grading" in the course's instructor guide for the threat model.
"""

from .course import Course, load_course
from .exercise import Exercise, hidden_problems, own_work_problem, probe_values
from .wire import Tolerance, compare, encode

__all__ = [
    "Course",
    "Exercise",
    "Tolerance",
    "compare",
    "encode",
    "hidden_problems",
    "load_course",
    "own_work_problem",
    "probe_values",
]
