"""The tool-calling loop end to end: model -> tool -> model, over real HTTP to the offline server.

Cells run in a real in-process IPython shell (and once in a real ipykernel); a few tests drive
:func:`clarifai_magic.engine.run_turn` directly with a real ``openai.OpenAI`` client. Each test
checks the exact messages the server received: ids, order and contents.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from clarifai_magic.engine import Transcript, TurnOptions, run_turn
from clarifai_magic.testing import OfflineServer, text, tool_calls
from clarifai_magic.tools import Tool, ToolRunner, as_tool, tool

from .conftest import TEST_PAT
from .kernel_util import Kernel
from .test_magic import final_markdown, run

MODEL = "https://clarifai.com/openai/chat-completion/models/gpt-4o"
DURATION = re.compile(r" · (<1 ms|\d+ ms|\d+\.\d\d s)$")


def assistant(content: str | None, *calls: tuple[str, str, str]) -> dict[str, Any]:
    """The assistant message the engine must send back for a round with these calls."""
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
            for i, n, a in calls
        ],
    }


def tool_message(call_id: str, name: str, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "name": name, "content": content}


def user(content: str) -> dict[str, Any]:
    return {"role": "user", "content": content}


def summaries(markdown: str) -> list[str]:
    """The visible one-line summaries of the collapsed tool blocks, as a reader sees them."""
    return [html.unescape(m) for m in re.findall(r"<details><summary>(.*?)</summary>", markdown)]


def define(shell: Any, source: str) -> None:
    """Run a code cell the way a user would, and fail loudly if it did not run."""
    result = shell.run_cell(source)
    assert result.success, result.error_in_exec or result.error_before_exec


def ask(shell: Any, cell: str) -> Any:
    out = run(shell, cell)
    assert out.result.success, out.stderr
    return out


class Frames:
    """A real (if tiny) view: keeps what each ``show`` saw, for the engine-level tests."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def show(self, transcript: Transcript, *, final: bool = False, force: bool = False) -> None:
        self.seen.append((transcript.status, final))


@pytest.fixture
def client(server: OfflineServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=TEST_PAT, max_retries=0) as c:
        yield c


@pytest.fixture
def runner() -> Iterator[ToolRunner]:
    with ToolRunner() as r:
        yield r


# --- stream shapes ------------------------------------------------------------------------------


def test_arguments_split_across_many_chunks_reach_the_tool_whole(
    shell: Any, server: OfflineServer
) -> None:
    define(
        shell,
        "forecast_calls = []\n"
        "def forecast(city: str, days: int, units: str = 'metric') -> str:\n"
        '    """Weather forecast for a city."""\n'
        "    forecast_calls.append((city, days, units))\n"
        "    return f'{city}: sunny for {days} days ({units})'\n",
    )
    arguments = json.dumps({"city": "São Paulo", "days": 3, "units": "imperial"})
    server.enqueue(
        tool_calls([("call_fc01", "forecast", arguments)], split=len(arguments)),
        text("Sunny all week in São Paulo."),
    )
    out = ask(shell, "%%clarifai --tools forecast\nWeather in São Paulo?")

    assert shell.user_ns["forecast_calls"] == [("São Paulo", 3, "imperial")]
    first, second = (r.json for r in server.chat_requests)
    schemas = [as_tool(shell.user_ns["forecast"]).schema()]
    assert first["tools"] == schemas and second["tools"] == schemas
    assert first["tool_choice"] == second["tool_choice"] == "auto"
    assert first["messages"] == [user("Weather in São Paulo?")]
    assert second["messages"] == [
        user("Weather in São Paulo?"),
        assistant(None, ("call_fc01", "forecast", arguments)),
        tool_message("call_fc01", "forecast", "São Paulo: sunny for 3 days (imperial)"),
    ]
    markdown = final_markdown(out)
    # The call is a collapsed block: name, arguments, result preview, duration.
    assert "<details open" not in markdown
    [summary] = summaries(markdown)
    assert summary.startswith('🔧 forecast(city="São Paulo", days=3, units="imperial") → ')
    assert "São Paulo: sunny for 3 days (imperial)" in summary
    assert DURATION.search(summary)
    assert markdown.index("</details>") < markdown.index("Sunny all week in São Paulo.")
    assert "2 rounds" in markdown
    assert out.outputs[-1].data["text/plain"] == "Sunny all week in São Paulo."


def test_two_parallel_calls_interleaved_by_index(shell: Any, server: OfflineServer) -> None:
    define(
        shell,
        "def population(country: str) -> int:\n    return {'France': 68, 'Japan': 124}[country]\n",
    )
    france, japan = json.dumps({"country": "France"}), json.dumps({"country": "Japan"})
    server.enqueue(
        tool_calls(
            [("call_fr", "population", france), ("call_jp", "population", japan)],
            interleave=True,
            split=4,
        ),
        text("Japan has more people."),
    )
    ask(shell, "%%clarifai --tools population\nFrance or Japan?")
    sent = server.chat_requests[1].json["messages"]
    assert sent[1:] == [
        assistant(None, ("call_fr", "population", france), ("call_jp", "population", japan)),
        tool_message("call_fr", "population", "68"),
        tool_message("call_jp", "population", "124"),
    ]


def test_claude_style_text_then_a_call_at_index_1(shell: Any, server: OfflineServer) -> None:
    define(shell, "def clock(zone: str) -> str:\n    return f'12:00 in {zone}'\n")
    arguments = json.dumps({"zone": "Europe/Paris"})
    server.enqueue(
        tool_calls(
            [("toolu_01AbCd", "clock", arguments)],
            text_before="Let me look at the clock.",
            first_index=1,
        ),
        text("It is noon in Paris."),
    )
    out = ask(shell, "%%clarifai --tools clock\nWhat time is it in Paris?")
    assert server.chat_requests[1].json["messages"][1:] == [
        assistant("Let me look at the clock.", ("toolu_01AbCd", "clock", arguments)),
        tool_message("toolu_01AbCd", "clock", "12:00 in Europe/Paris"),
    ]
    markdown = final_markdown(out)
    before, block, after = (
        markdown.index("Let me look at the clock."),
        markdown.index("<details><summary>🔧 clock("),
        markdown.index("It is noon in Paris."),
    )
    assert before < block < after
    assert out.outputs[-1].data["text/plain"] == "It is noon in Paris."


def test_a_call_whole_in_one_chunk(shell: Any, server: OfflineServer) -> None:
    define(shell, "def square(n: int) -> int:\n    return n * n\n")
    server.enqueue(
        tool_calls([("call_sq", "square", '{"n": 12}')], whole=True), text("144, as computed.")
    )
    ask(shell, "%%clarifai --tools square\n12 squared?")
    assert server.chat_requests[1].json["messages"][1:] == [
        assistant(None, ("call_sq", "square", '{"n": 12}')),
        tool_message("call_sq", "square", "144"),
    ]


# --- failures the model is told about -------------------------------------------------------


def test_a_tool_that_was_not_offered_is_refused_and_reported(
    shell: Any, server: OfflineServer
) -> None:
    define(
        shell,
        "wiped = []\n"
        "def wipe_disk(path: str) -> str:\n"
        "    wiped.append(path)\n"
        "    return 'gone'\n"
        "def lookup(key: str) -> str:\n"
        "    return key.upper()\n",
    )
    server.enqueue(tool_calls([("call_w", "wipe_disk", '{"path": "/"}')]), text("I can't do that."))
    out = ask(shell, "%%clarifai --tools lookup\nClean up my disk.")
    assert shell.user_ns["wiped"] == [], "a function in the notebook but not offered must not run"
    assert server.chat_requests[1].json["messages"][-1] == tool_message(
        "call_w", "wipe_disk", "Error: there is no tool named 'wipe_disk'. Tools: lookup."
    )
    markdown = final_markdown(out)
    assert "<details><summary>⚠️ wipe_disk(" in markdown
    assert "there is no tool named" in markdown and "I can't do that." in markdown


def test_malformed_arguments_are_reported_and_the_tool_does_not_run(
    shell: Any, server: OfflineServer
) -> None:
    define(
        shell,
        "looked_up = []\ndef lookup(key: str) -> str:\n    looked_up.append(key)\n    return key\n",
    )
    server.enqueue(
        tool_calls([("call_bad", "lookup", '{"key": "abc')]),
        tool_calls([("call_good", "lookup", '{"key": "abc"}')]),
        text("Found abc."),
    )
    out = ask(shell, "%%clarifai --tools lookup\nLook up abc")
    assert shell.user_ns["looked_up"] == ["abc"]  # only the well-formed retry ran
    requests = [r.json for r in server.chat_requests]
    assert len(requests) == 3
    bad = requests[1]["messages"][-1]
    assert (bad["role"], bad["tool_call_id"], bad["name"]) == ("tool", "call_bad", "lookup")
    assert bad["content"].startswith("Error: the arguments for lookup are not valid JSON")
    assert bad["content"].endswith("Send a JSON object.")
    assert requests[2]["messages"][-1] == tool_message("call_good", "lookup", "abc")
    assert [m["role"] for m in requests[2]["messages"]] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
    ]
    assert "Found abc." in final_markdown(out)


def test_invalid_argument_types_are_reported(shell: Any, server: OfflineServer) -> None:
    define(shell, "def square(n: int) -> int:\n    return n * n\n")
    server.enqueue(tool_calls([("call_t", "square", '{"n": "twelve"}')]), text("Sorry."))
    ask(shell, "%%clarifai --tools square\n12 squared?")
    content = server.chat_requests[1].json["messages"][-1]["content"]
    assert content.startswith("Error: invalid arguments for square:") and "n" in content


def test_a_raising_tool_shows_its_traceback_and_tells_the_model(
    shell: Any, server: OfflineServer
) -> None:
    define(
        shell,
        "def divide(a: float, b: float) -> float:\n"
        "    if b == 0:\n"
        "        raise ZeroDivisionError(f'cannot divide {a} by zero')\n"
        "    return a / b\n",
    )
    server.enqueue(
        tool_calls([("call_div", "divide", '{"a": 1, "b": 0}')]),
        text("Division by zero is undefined."),
    )
    out = ask(shell, "%%clarifai --tools divide\n1/0?")
    assert server.chat_requests[1].json["messages"][-1] == tool_message(
        "call_div", "divide", "Error: divide raised ZeroDivisionError: cannot divide 1.0 by zero"
    )
    markdown = final_markdown(out)
    block = markdown.split("<details><summary>⚠️ divide(", 1)[1].split("</details>", 1)[0]
    assert "divide raised ZeroDivisionError" in block
    assert "**Traceback**" in block
    assert "raise ZeroDivisionError(f'cannot divide {a} by zero')" in block
    assert "Division by zero is undefined." in markdown
    assert "Traceback" not in out.stderr  # shown in the block, not as a cell error


def test_an_async_tool(shell: Any, server: OfflineServer) -> None:
    define(
        shell,
        "import asyncio\n"
        "async def fetch_status(url: str) -> dict:\n"
        "    await asyncio.sleep(0.01)\n"
        "    return {'url': url, 'status': 200}\n",
    )
    server.enqueue(
        tool_calls([("call_as", "fetch_status", '{"url": "https://example.com"}')]),
        text("The site is up."),
    )
    out = ask(shell, "%%clarifai --tools fetch_status\nIs example.com up?")
    content = server.chat_requests[1].json["messages"][-1]["content"]
    assert json.loads(content) == {"url": "https://example.com", "status": 200}
    assert "The site is up." in final_markdown(out)


def test_max_rounds_stops_the_loop_with_a_clear_message(shell: Any, server: OfflineServer) -> None:
    define(shell, "def again(n: int) -> int:\n    return n + 1\n")
    server.enqueue(
        *[tool_calls([(f"call_{n}", "again", json.dumps({"n": n}))]) for n in range(3)],
        text("never requested"),
    )
    out = run(shell, "%%clarifai --tools again --max-rounds 2\nCount forever.")
    assert not out.result.success  # the cell fails, so a Run All stops here
    assert "The answer above is incomplete" in out.stdout and "Traceback" not in out.stdout
    # Two rounds of tools run; the third request's calls are not run (nobody would read them).
    assert len(server.chat_requests) == 3
    assert server.pending == 1
    markdown = final_markdown(out)
    assert "still wanted to call tools after 2 rounds" in markdown and "--max-rounds" in markdown
    ran = [s.split(" → ")[0] for s in summaries(markdown) if " → " in s]
    assert ran == ["🔧 again(n=0)", "🔧 again(n=1)"]


def test_after_max_rounds_the_next_question_sends_only_real_messages(
    shell: Any, server: OfflineServer
) -> None:
    """The rounds that ran are kept; no extra, empty assistant message is invented."""
    define(shell, "def again(n: int) -> int:\n    return n + 1\n")
    server.enqueue(
        tool_calls([("call_0", "again", '{"n": 0}')]),
        tool_calls([("call_1", "again", '{"n": 1}')]),
        tool_calls([("call_2", "again", '{"n": 2}')]),
        text("Fine, I stop."),
    )
    run(shell, "%%clarifai --tools again --max-rounds 2\nCount forever.")
    ask(shell, "%%clarifai\nStop counting.")
    assert server.chat_requests[-1].json["messages"] == [
        user("Count forever."),
        assistant(None, ("call_0", "again", '{"n": 0}')),
        tool_message("call_0", "again", "1"),
        assistant(None, ("call_1", "again", '{"n": 1}')),
        tool_message("call_1", "again", "2"),
        user("Stop counting."),
    ]


# --- confirmation ---------------------------------------------------------------------------


def test_confirm_callback_refuses_one_call_and_accepts_another(
    server: OfflineServer, client: openai.OpenAI, runner: ToolRunner
) -> None:
    removed: list[str] = []
    asked: list[tuple[str, dict[str, Any]]] = []

    @tool(confirm=True)
    def remove_file(path: str) -> str:
        """Delete a file."""
        removed.append(path)
        return f"removed {path}"

    def confirm(spec: Tool, arguments: dict[str, Any]) -> bool:
        asked.append((spec.name, arguments))
        return arguments["path"] != "/etc/passwd"

    server.enqueue(
        tool_calls(
            [
                ("call_p", "remove_file", '{"path": "/etc/passwd"}'),
                ("call_t", "remove_file", '{"path": "tmp.txt"}'),
            ]
        ),
        text("Removed tmp.txt only."),
    )
    saved: list[tuple[list[dict[str, Any]], bool]] = []
    transcript = run_turn(
        client,
        [user("Remove both files")],
        TurnOptions(model=MODEL, tools={"remove_file": as_tool(remove_file)}),
        Frames(),
        runner=runner,
        confirm=confirm,
        on_messages=lambda new, partial, usage: saved.append((new, partial)),
    )
    assert transcript.status == "done" and transcript.answer == "Removed tmp.txt only."
    assert asked == [("remove_file", {"path": "/etc/passwd"}), ("remove_file", {"path": "tmp.txt"})]
    assert removed == ["tmp.txt"]
    tool_round = [
        assistant(
            None,
            ("call_p", "remove_file", '{"path": "/etc/passwd"}'),
            ("call_t", "remove_file", '{"path": "tmp.txt"}'),
        ),
        tool_message("call_p", "remove_file", "The user declined to run remove_file."),
        tool_message("call_t", "remove_file", "removed tmp.txt"),
    ]
    assert server.chat_requests[1].json["messages"] == [user("Remove both files"), *tool_round]
    # The store hears of the tool round when it is complete, then of the answer.
    assert saved == [
        (tool_round, False),
        ([{"role": "assistant", "content": "Removed tmp.txt only."}], False),
    ]


def test_magic_asks_on_the_keyboard_and_n_refuses(
    shell: Any, server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    define(
        shell,
        "from clarifai_magic import tool\n"
        "dropped = []\n"
        "@tool(confirm=True)\n"
        "def drop_table(name: str) -> str:\n"
        "    dropped.append(name)\n"
        "    return 'dropped'\n",
    )
    prompts: list[str] = []

    def keyboard(prompt: str = "") -> str:
        prompts.append(prompt)
        return "n"

    monkeypatch.setattr("builtins.input", keyboard)
    server.enqueue(
        tool_calls([("call_dt", "drop_table", '{"name": "sales"}')]), text("I left it alone.")
    )
    out = ask(shell, "%%clarifai --tools drop_table\nDrop the sales table.")
    [prompt] = prompts  # asked once, naming the tool and its arguments
    assert prompt.startswith("Run drop_table(") and "sales" in prompt
    assert prompt.endswith("[y/N] ")
    assert shell.user_ns["dropped"] == []
    assert server.chat_requests[1].json["messages"][-1] == tool_message(
        "call_dt", "drop_table", "The user declined to run drop_table."
    )
    assert "declined" in final_markdown(out)

    monkeypatch.setattr("builtins.input", lambda prompt="": "y")
    server.enqueue(tool_calls([("call_dt2", "drop_table", '{"name": "tmp"}')]), text("Done."))
    ask(shell, "%%clarifai --tools drop_table\nDrop the tmp table.")
    assert shell.user_ns["dropped"] == ["tmp"]


# --- which tools are offered ----------------------------------------------------------------


def test_tools_add_list_show_remove(shell: Any, server: OfflineServer) -> None:
    define(
        shell,
        "def convert(amount: float, currency: str = 'EUR') -> float:\n"
        '    """Convert US dollars.\n\n    Args:\n        amount: Dollars.\n    """\n'
        "    return amount * 0.9\n",
    )
    assert run(shell, "%clarifai tools list").stdout.strip() == "Session tools: none"
    out = run(shell, "%clarifai tools add convert")
    assert out.stdout.strip() == "Session tools: convert"
    assert run(shell, "%clarifai tools list").stdout.strip() == "Session tools: convert"

    shown = run(shell, "%clarifai tools show convert").stdout
    name, _, schema = shown.partition("\n")
    assert name == "convert:"
    assert json.loads(schema) == {
        "type": "function",
        "function": {
            "name": "convert",
            "description": "Convert US dollars.",
            "parameters": {
                "type": "object",
                "properties": {
                    "amount": {"type": "number", "description": "Dollars."},
                    "currency": {"type": "string", "default": "EUR"},
                },
                "required": ["amount"],
            },
        },
    }

    # Later cells get the tool without --tools.
    server.enqueue(tool_calls([("call_cv", "convert", '{"amount": 10}')]), text("9 EUR."))
    ask(shell, "%%clarifai\n10 USD in EUR?")
    first, second = (r.json for r in server.chat_requests)
    assert first["tools"] == [json.loads(schema)] == second["tools"]
    assert second["messages"][-1] == tool_message("call_cv", "convert", "9.0")

    assert run(shell, "%clarifai tools remove convert").stdout.strip() == "Session tools: none"
    server.clear()
    server.enqueue(text("No tools now."))
    ask(shell, "%%clarifai\nAgain?")
    assert "tools" not in server.chat_requests[0].json


def test_tools_add_of_an_undefined_name_says_so(shell: Any, server: OfflineServer) -> None:
    shell.user_ns.pop("not_defined_here", None)
    out = run(shell, "%clarifai tools add not_defined_here")
    assert "No function named 'not_defined_here'" in out.stdout + out.stderr
    assert run(shell, "%clarifai tools list").stdout.strip() == "Session tools: none"
    out = run(shell, "%%clarifai --tools not_defined_here\nq")
    assert "No function named 'not_defined_here'" in out.stdout + out.stderr
    assert not server.chat_requests


def test_redefining_a_function_in_a_later_cell_takes_effect(
    shell: Any, server: OfflineServer
) -> None:
    define(shell, "def rate(city: str) -> str:\n    return 'v1 ' + city\n")
    run(shell, "%clarifai tools add rate")
    server.enqueue(tool_calls([("call_r1", "rate", '{"city": "Oslo"}')]), text("one"))
    ask(shell, "%%clarifai\nRate Oslo")
    assert server.chat_requests[-1].json["messages"][-1]["content"] == "v1 Oslo"

    define(
        shell,
        "def rate(city: str, stars: int = 5) -> str:\n"
        '    """Rate a city (new version)."""\n'
        "    return f'v2 {city} {stars}'\n",
    )
    server.enqueue(tool_calls([("call_r2", "rate", '{"city": "Oslo", "stars": 4}')]), text("two"))
    ask(shell, "%%clarifai\nRate Oslo again")
    last = server.chat_requests[-1].json
    assert last["messages"][-1] == tool_message("call_r2", "rate", "v2 Oslo 4")
    assert last["tools"] == [as_tool(shell.user_ns["rate"]).schema()]
    assert last["tools"][0]["function"]["description"] == "Rate a city (new version)."


def test_history_holds_the_tool_call_and_its_result(shell: Any, server: OfflineServer) -> None:
    define(shell, "def stock(item: str) -> int:\n    return 17\n")
    server.enqueue(tool_calls([("call_st", "stock", '{"item": "apples"}')]), text("17 apples."))
    ask(shell, "%%clarifai --tools stock\nHow many apples?")

    magics = shell._clarifai_magics
    conv = magics.session.conversation()
    stored = magics.session.store.messages(conv)
    assert [m.message for m in stored] == [
        user("How many apples?"),
        assistant(None, ("call_st", "stock", '{"item": "apples"}')),
        tool_message("call_st", "stock", "17"),
        {"role": "assistant", "content": "17 apples."},
    ]
    assert not any(m.partial for m in stored)

    history = final_markdown(run(shell, "%clarifai history"))
    assert '🔧 `stock(item="apples")`' in history
    assert "result of stock" in history and "17" in history

    # The next question carries the whole exchange, tool messages included.
    server.enqueue(text("And 3 pears."))
    ask(shell, "%%clarifai\nAnd pears?")
    assert server.chat_requests[-1].json["messages"] == [
        *(m.message for m in stored),
        user("And pears?"),
    ]


# --- models that can't stream tool calls ----------------------------------------------------


def test_without_tool_streaming_the_loop_runs_on_plain_responses(
    server: OfflineServer, client: openai.OpenAI, runner: ToolRunner
) -> None:
    def area(width: float, height: float) -> float:
        """Area of a rectangle."""
        return width * height

    server.enqueue(
        tool_calls([("call_a", "area", '{"width": 2, "height": 3}')], text_before="Computing."),
        text("The area is 6."),
    )
    view = Frames()
    transcript = run_turn(
        client,
        [user("Area of 2x3?")],
        TurnOptions(model=MODEL, tools={"area": as_tool(area)}, tool_streaming=False),
        view,
        runner=runner,
    )
    assert transcript.status == "done" and transcript.answer == "The area is 6."
    first, second = (r.json for r in server.chat_requests)
    assert first["stream"] is False and second["stream"] is False
    assert "stream_options" not in first
    assert first["tools"] == [as_tool(area).schema()] == second["tools"]
    assert second["messages"] == [
        user("Area of 2x3?"),
        assistant("Computing.", ("call_a", "area", '{"width": 2, "height": 3}')),
        tool_message("call_a", "area", "6.0"),
    ]
    assert ("running tools", False) in view.seen and view.seen[-1] == ("done", True)
    assert [a.outcome.content for a in transcript.rounds[0].tools if a.outcome] == ["6.0"]


# --- a real kernel --------------------------------------------------------------------------


def test_kernel_a_function_from_one_cell_is_called_by_the_model_in_the_next(
    kernel: Kernel, server: OfflineServer
) -> None:
    assert kernel.run("%load_ext clarifai_magic").error is None
    defined = kernel.run(
        "def word_count(text: str) -> int:\n"
        '    """Count the words in a text."""\n'
        "    return len(text.split())\n"
    )
    assert defined.error is None
    server.enqueue(
        tool_calls([("call_wc", "word_count", '{"text": "the quick brown fox"}')], split=5),
        text("There are **4** words."),
    )
    cell = kernel.run("%%clarifai --tools word_count\nHow many words in 'the quick brown fox'?")
    assert cell.reply is not None and cell.reply["content"]["status"] == "ok", cell.error
    assert cell.error is None
    second = server.chat_requests[1].json
    assert second["tools"][0]["function"]["name"] == "word_count"
    assert second["messages"][-1] == tool_message("call_wc", "word_count", "4")
    markdown = cell.last_markdown
    [summary] = summaries(markdown)
    assert summary.startswith('🔧 word_count(text="the quick brown fox") → 4 · ')
    assert "There are **4** words." in markdown


def test_tool_results_are_cut_to_the_configured_size(shell: Any, server: OfflineServer) -> None:
    define(shell, "def big() -> str:\n    return 'x' * 500\n")
    run(shell, "%config ClarifaiMagics.max_tool_result_chars = 100")
    try:
        server.enqueue(tool_calls([("call_big", "big", "{}")]), text("ok"))
        ask(shell, "%%clarifai --tools big\nCall big.")
    finally:
        run(shell, "%config ClarifaiMagics.max_tool_result_chars = None")
    content = server.chat_requests[1].json["messages"][-1]["content"]
    assert content == "x" * 100 + "\n…[truncated 400 characters]"
