"""clarifai_magic: Clarifai-hosted models in Jupyter notebooks.

``%load_ext clarifai_magic`` registers the ``%%clarifai`` cell magic and ``%clarifai`` line
commands; ``from clarifai_magic import tool`` declares functions the model may call.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_ipython_extension", "tool", "unload_ipython_extension"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Imported on first use so that `%load_ext clarifai_magic` stays cheap.
    if name == "tool":
        from .tools import tool

        return tool
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
