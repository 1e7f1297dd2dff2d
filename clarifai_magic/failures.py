"""How a cell fails: one clear paragraph in place of a traceback.

Raising :class:`CellFailed` marks the cell as failed (so *Run All* and papermill stop there) and
IPython shows only what ``_render_traceback_`` returns. Option mistakes raise IPython's own
``UsageError``, which IPython also shows as one line.
"""

from __future__ import annotations


class CellFailed(Exception):
    """Fails the cell with one clear paragraph, no traceback."""

    def _render_traceback_(self) -> list[str]:
        return [str(self)]
