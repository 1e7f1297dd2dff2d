"""The engine on its own: a real openai client against the offline server, a small real view."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from clarifai_magic.engine import Transcript, TurnOptions, run_turn
from clarifai_magic.testing import OfflineServer, text
from clarifai_magic.tools import ToolRunner


class BrokenView:
    """A view with a bug: it fails on its second draw."""

    def __init__(self) -> None:
        self.draws = 0

    def show(self, transcript: Transcript, *, final: bool = False, force: bool = False) -> None:
        self.draws += 1
        if self.draws == 2:
            raise ValueError("bug in the view")


def test_a_failing_view_costs_neither_the_stream_nor_the_store(server: OfflineServer) -> None:
    server.enqueue(text("all of it " * 50, chunk_size=2))
    saved: list[tuple[list[dict[str, Any]], bool]] = []
    client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
    with client, ToolRunner() as runner, pytest.raises(ValueError, match="bug in the view"):
        run_turn(
            client,
            [{"role": "user", "content": "q"}],
            TurnOptions(model="https://clarifai.com/a/b/models/c"),
            BrokenView(),
            runner=runner,
            on_messages=lambda messages, partial, usage: saved.append((messages, partial)),
        )
    assert saved == [([{"role": "assistant", "content": "all of it " * 50}], False)]
