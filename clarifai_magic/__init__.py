"""clarifai_magic: Clarifai-hosted models in Jupyter notebooks.

``%load_ext clarifai_magic`` registers the ``%%clarifai`` cell magic and ``%clarifai`` line
commands; ``from clarifai_magic import tool`` declares functions the model may call, and inside
such a function ``clarifai_magic.cancelled()`` (or ``cancel_event()``) says the turn was
cancelled or the call timed out, so a long sync tool can stop early. ``clarifai_magic.Chat(...)``
as a cell's last expression shows a chat panel.
"""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = [
    "Chat",
    "cancel_event",
    "cancelled",
    "load_ipython_extension",
    "tool",
    "unload_ipython_extension",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Imported on first use so that `%load_ext clarifai_magic` stays cheap.
    if name in ("tool", "cancelled", "cancel_event"):
        from . import tools

        value = getattr(tools, name)
        globals()[name] = value  # found directly from now on: a tool may poll cancelled() often
        return value
    if name == "Chat":  # the chat panel needs ipywidgets: imported only when asked for
        from .widget import Chat

        return Chat
    raise AttributeError(f"module 'clarifai_magic' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    from .magics import ClarifaiMagics

    magics = ClarifaiMagics(ipython)
    ipython.register_magics(magics)
    # Conversations of a notebook nothing identifies belong to the kernel: the same key after
    # `%reload_ext`, a fresh one in a fresh kernel.
    kernel_key = getattr(ipython, "_clarifai_kernel_key", None) or magics.session.kernel_key
    ipython._clarifai_kernel_key = magics.session.kernel_key = kernel_key
    cells = _CellEvents(ipython, magics.session)
    ipython.events.register("pre_run_cell", cells.pre_run_cell)
    ipython.events.register("post_run_cell", cells.post_run_cell)
    # The extension's state, so unload can close and unregister it.
    ipython._clarifai_magics = magics
    ipython._clarifai_cells = cells


def unload_ipython_extension(ipython: Any) -> None:
    cells = getattr(ipython, "_clarifai_cells", None)
    if cells is not None:
        for event, callback in (
            ("pre_run_cell", cells.pre_run_cell),
            ("post_run_cell", cells.post_run_cell),
        ):
            with contextlib.suppress(ValueError):  # already unregistered by hand
                ipython.events.unregister(event, callback)
        del ipython._clarifai_cells
    magics = getattr(ipython, "_clarifai_magics", None)
    if magics is not None:
        magics.session.close()
        del ipython._clarifai_magics
    # IPython has no unregister: take the magic out by hand so no stale one lingers.
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("clarifai", None)


class _CellEvents:
    """Tells the session which notebook cell runs: Jupyter front ends send its id (``cellId``)
    and the ids of cells deleted since (``deletedCells``, JupyterLab) with every execution."""

    def __init__(self, ipython: Any, session: Any) -> None:
        self.ipython = ipython
        self.session = session

    def pre_run_cell(self, info: Any) -> None:
        if hasattr(info, "cell_meta"):  # IPython >= 9 hands on the request's metadata
            metadata = info.cell_meta if isinstance(info.cell_meta, dict) else {}
        else:
            metadata = self._request_metadata()
        cell_id = getattr(info, "cell_id", None) or metadata.get("cellId")
        deleted = metadata.get("deletedCells")
        self.session.enter_cell(
            cell_id if isinstance(cell_id, str) else None,
            deleted if isinstance(deleted, list) else (),
        )

    def post_run_cell(self, result: Any) -> None:
        self.session.leave_cell()

    def _request_metadata(self) -> dict[str, Any]:
        """The execute request's metadata, from the kernel (none in terminal IPython)."""
        kernel = getattr(self.ipython, "kernel", None)
        try:
            parent = kernel.get_parent("shell") if kernel is not None else None
        except Exception:  # an older ipykernel: no get_parent, or no channel argument
            parent = getattr(kernel, "_parent_header", None)
        metadata = parent.get("metadata") if isinstance(parent, dict) else None
        return metadata if isinstance(metadata, dict) else {}
