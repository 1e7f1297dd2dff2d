"""Where output goes: rendered displays in a notebook cell, or plain text in a terminal.

:func:`cell_output` is the one place that decides; the cell magic picks its view with it and
the line commands write through an :class:`Output`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from IPython.display import Markdown, display


def cell_output(shell: Any, display_mode: str) -> bool:
    """Draw rich displays (a notebook front end) rather than print text (a terminal)?"""
    if display_mode != "auto":
        return display_mode == "cell"
    # A kernel-backed shell (Jupyter, VS Code, Colab) has a kernel; terminal IPython hasn't.
    return getattr(shell, "kernel", None) is not None


class Output:
    """Markdown, text and warnings for the user, drawn the way :func:`cell_output` says."""

    def __init__(self, in_cell: Callable[[], bool]) -> None:
        self._in_cell = in_cell

    def markdown(self, text: str) -> None:
        if self._in_cell():
            display(Markdown(text))
        else:
            print(text)

    def text(self, text: str) -> None:
        print(text)

    def warn(self, text: str) -> None:
        print(text, file=sys.stderr)
