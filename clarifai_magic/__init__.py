"""clarifai_magic: Clarifai-hosted models in Jupyter notebooks.

``%load_ext clarifai_magic`` registers the ``%%clarifai`` cell magic and ``%clarifai`` line
commands; ``from clarifai_magic import tool`` declares functions the model may call, and inside
such a function ``clarifai_magic.cancelled()`` (or ``cancel_event()``) says the turn was
cancelled or the call timed out, so a long sync tool can stop early.
"""

from __future__ import annotations

from typing import Any

__all__ = [
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
    raise AttributeError(f"module 'clarifai_magic' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    from .magics import ClarifaiMagics

    magics = ClarifaiMagics(ipython)
    ipython.register_magics(magics)
    ipython._clarifai_magics = magics  # the one piece of extension state, so unload can close it


def unload_ipython_extension(ipython: Any) -> None:
    magics = getattr(ipython, "_clarifai_magics", None)
    if magics is not None:
        magics.session.close()
        del ipython._clarifai_magics
    # IPython has no unregister: take the magic out by hand so no stale one lingers.
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("clarifai", None)
