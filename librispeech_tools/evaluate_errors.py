"""evaluate's refusals: each is one line on stderr and an exit status, never a traceback."""
from __future__ import annotations


class EvaluationError(Exception):
    """A problem with the user's request: reported as one line, exit status 1."""


class Interrupted(EvaluationError):
    """Ctrl-C during the run: one line saying what was kept, exit status 130 as for any interrupted command."""
