"""``python -m clarifai_magic.offline --port 8765``: run the offline server until Ctrl-C."""

from .server import main

raise SystemExit(main())
