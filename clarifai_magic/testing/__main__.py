"""``python -m clarifai_magic.testing --port 8765``: the offline server, under its older name."""

from ..offline.server import main

raise SystemExit(main(prog="python -m clarifai_magic.testing"))
