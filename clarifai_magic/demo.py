"""``clarifai-magic demo``: a short magic session in a real IPython shell, printed as it streams.

With a PAT (``CLARIFAI_PAT`` or the Clarifai CLI config) the questions go to Clarifai. Without
one, the offline server (:mod:`.offline`) answers with scripted replies, and the demo says so
plainly.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence

from .config import find_credentials
from .offline import OfflineServer, text, tool_calls

INTRO_NO_PAT = (
    "No Clarifai PAT found (CLARIFAI_PAT or ~/.config/clarifai/config), so this demo runs "
    "against the built-in offline server on 127.0.0.1."
)
INTRO_OFFLINE = (
    " Its replies are SCRIPTED, not from a real model.\n"
    "Set CLARIFAI_PAT to run the same demo against Clarifai.\n"
)

CELLS = [
    "%load_ext clarifai_magic",
    "df_name = 'sales_2025'\ncolumns = ['region', 'units', 'revenue']",
    "%%clarifai\nExplain {df_name}'s columns {columns} in two sentences.",
    (
        "from clarifai_magic import tool\n\n"
        "@tool\n"
        "def unit_price(region: str) -> float:\n"
        '    """Average unit price in a sales region.\n\n'
        "    Args:\n"
        "        region: Region name, e.g. 'north'.\n"
        '    """\n'
        "    return {'north': 12.5, 'south': 9.75}.get(region, 10.0)"
    ),
    "%%clarifai --tools unit_price\nWhat is the unit price in the north region?",
    "%clarifai chats",
]


def _script_offline(server: OfflineServer) -> None:
    """Queue the demo's answers: they fit its cells, which the stand-in model's echo would not."""
    server.enqueue(
        text(
            "**region** names where a sale happened, while **units** and **revenue** count how "
            "many items were sold and what they brought in.\n\nTogether they let you compare "
            "regions by volume and by value.",
            reasoning="The user wants a short description of three columns.",
            delay=0.02,
        ),
        tool_calls([("call_demo_1", "unit_price", '{"region": "north"}')], delay=0.02),
        text("The average unit price in the **north** region is **12.5**.", delay=0.02),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clarifai-magic", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a short %%clarifai session in IPython")
    demo.add_argument("--offline", action="store_true", help="use the scripted offline server")
    demo.add_argument("-m", "--model", help="model to ask (default: gpt-4o)")
    args = parser.parse_args(argv)

    server = None
    # The demo's conversation is its own: it never lands among the user's notebooks.
    os.environ["CLARIFAI_MAGIC_HOME"] = tempfile.mkdtemp(prefix="clarifai-magic-demo-")
    os.environ["JPY_SESSION_NAME"] = "clarifai-magic-demo.ipynb"  # a name, as a notebook has
    if args.offline or find_credentials() is None:
        intro = "Offline demo (--offline): the built-in server on 127.0.0.1 answers."
        print((INTRO_NO_PAT if not args.offline else intro) + INTRO_OFFLINE)
        server = OfflineServer(record=False).start()
        _script_offline(server)
        os.environ["CLARIFAI_PAT"] = "offline-demo-token"
        os.environ["CLARIFAI_API_BASE"] = server.api_base
    if args.model:
        os.environ["CLARIFAI_MODEL"] = args.model

    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    failed = False
    try:
        for number, cell in enumerate(CELLS, 1):
            print(f"In [{number}]: " + cell.replace("\n", "\n" + " " * (len(str(number)) + 6)))
            result = shell.run_cell(cell, store_history=True)
            failed = failed or not result.success
            print()
    finally:
        shell.run_line_magic("unload_ext", "clarifai_magic")
        if server is not None:
            server.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
