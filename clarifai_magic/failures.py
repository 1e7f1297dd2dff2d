"""Failures that cross modules, and how a cell fails: one clear paragraph, no traceback.

Raising :class:`CellFailed` marks the cell as failed (so *Run All* and papermill stop there) and
IPython shows only what ``_render_traceback_`` returns. Option mistakes raise IPython's own
``UsageError``, which IPython also shows as one line. The store's errors live here so the magic
can name them without loading the store. No IPython imports.
"""

from __future__ import annotations


class CellFailed(Exception):
    """Fails the cell with one clear paragraph, no traceback."""

    def _render_traceback_(self) -> list[str]:
        return [str(self)]


class StoreError(Exception):
    """The store could not do what was asked (busy, disk full, ...); the message says why."""


class StoreInterrupted(KeyboardInterrupt):
    """An interrupt (the kernel's Stop) while the store waited or wrote: still a
    ``KeyboardInterrupt``, never caught as an error; the message says the store is fine."""
