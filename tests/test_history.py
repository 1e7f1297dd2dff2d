"""Notebook identity and context trimming (clarifai_magic.history)."""

from __future__ import annotations

import copy
import json
import random

import pytest

from clarifai_magic.history import (
    DEFAULT_MAX_HISTORY_TOKENS,
    IMAGE_TOKENS,
    approx_tokens,
    fit,
    history_budget,
    notebook_key,
    repair_tool_calls,
    trim,
)
from clarifai_magic.session import Session, Settings

# -- notebook_key ----------------------------------------------------------------------------


def test_vscode_notebook_file_wins() -> None:
    ns = {"__vsc_ipynb_file__": "/home/ada/work/analysis.ipynb", "__session__": "analysis.ipynb"}
    env = {"JPY_SESSION_NAME": "other.ipynb"}
    assert notebook_key(ns, env, "/tmp") == "/home/ada/work/analysis.ipynb"


def test_jupyter_session_path_kept_as_given() -> None:
    ns = {"__session__": "projects/q3/report.ipynb"}
    assert notebook_key(ns, {}, "/srv/projects/q3") == "projects/q3/report.ipynb"


def test_environment_session_name_when_kernel_did_not_set_it() -> None:
    # nbclient/papermill callers set JPY_SESSION_NAME themselves; ipykernel < 6.21 has no
    # __session__.
    assert notebook_key({}, {"JPY_SESSION_NAME": "runs/nb.ipynb"}, "/x") == "runs/nb.ipynb"


def test_blank_values_are_ignored() -> None:
    ns = {"__vsc_ipynb_file__": "", "__session__": "  "}
    assert notebook_key(ns, {"JPY_SESSION_NAME": "nb.ipynb"}, "/x") == "nb.ipynb"


def test_nothing_identifies_a_script_or_an_unnamed_nbclient_run(tmp_path) -> None:
    # The working directory is no answer: every notebook of a folder would share it.
    assert notebook_key({}, {}, str(tmp_path)) is None
    assert notebook_key({"__session__": ""}, {"JPY_SESSION_NAME": " "}) is None


def test_an_unidentified_notebook_keeps_its_conversations_to_its_kernel() -> None:
    first, second = Session(lambda: None), Session(lambda: None)
    assert first.notebook_key().startswith("kernel:")
    assert first.notebook_key() == first.notebook_key() != second.notebook_key()
    notice = first.pop_store_notice()
    assert notice is not None
    assert first.kernel_key in notice and "%config ClarifaiMagics.notebook" in notice
    first.notebook_key()
    assert first.pop_store_notice() is None  # said once


def test_the_users_name_for_the_notebook_wins() -> None:
    session = Session(lambda: "draft.ipynb")
    assert session.notebook_key() == "draft.ipynb"
    session.settings.notebook_name = " report "
    assert session.notebook_key() == "report"
    unnamed = Session(lambda: None, settings=Settings(notebook_name="report"))
    assert unnamed.notebook_key() == "report"
    assert unnamed.pop_store_notice() is None  # named: nothing to tell


# -- approx_tokens ---------------------------------------------------------------------------


def test_text_is_about_four_characters_a_token() -> None:
    short = approx_tokens({"role": "user", "content": "x" * 40})
    long = approx_tokens({"role": "user", "content": "x" * 4000})
    assert long - short == (4000 - 40) // 4


def test_image_counts_as_an_image_not_as_its_base64() -> None:
    data_url = "data:image/png;base64," + "A" * 400_000
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": data_url}},
        ],
    }
    assert IMAGE_TOKENS <= approx_tokens(message) < IMAGE_TOKENS + 20


def test_tool_call_arguments_count() -> None:
    bare = {"role": "assistant", "content": None}
    calling = dict(bare, tool_calls=[_call("c1", args='{"q": "' + "y" * 400 + '"}')])
    assert approx_tokens(calling) - approx_tokens(bare) >= 100


# -- repair_tool_calls -----------------------------------------------------------------------


def test_unanswered_calls_and_orphan_results_are_dropped() -> None:
    messages = [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [_call("a"), _call("b")],
        },
        _result("a"),  # the kernel died before b's result was stored
        {"role": "tool", "tool_call_id": "zz", "content": "stray"},
        {"role": "tool", "tool_call_id": "lost", "content": "orphan"},
        {"role": "assistant", "content": None, "tool_calls": [_call("c")]},  # never answered
    ]
    before = copy.deepcopy(messages)
    out = repair_tool_calls(messages)
    assert messages == before  # inputs untouched
    assert out == [
        messages[0],
        dict(messages[1], tool_calls=[_call("a")]),
        _result("a"),
    ]


def test_assistant_text_survives_when_all_its_calls_are_dropped() -> None:
    out = repair_tool_calls(
        [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Let me look", "tool_calls": [_call("a")]},
        ]
    )
    assert out == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Let me look"},
    ]


# -- trim ------------------------------------------------------------------------------------


def test_no_budget_sends_everything_with_system_first() -> None:
    conv = _conversation(turns=3)
    assert trim(conv) == conv


def test_max_messages_drops_oldest_whole_turns() -> None:
    conv = _conversation(turns=4, tool_rounds=1)  # each turn: user, call, 2 results, answer
    out = trim(conv, max_messages=14)
    assert out[0]["role"] == "system"
    assert [m["content"] for m in out if m["role"] == "user"] == ["question 2", "question 3"]
    assert out[1:] == conv[-10:]


def test_never_starts_with_a_tool_result_or_splits_a_call_from_its_results() -> None:
    conv = _conversation(turns=3, tool_rounds=2)  # a turn: user, 2 x (call, 2 results), answer
    for limit in range(8, 25):
        out = trim(conv, max_messages=limit)
        _assert_sendable(out)
        assert out[1]["role"] == "user"
        assert out[-1] == conv[-1]


def test_token_budget_keeps_system_prompt_and_newest_turns() -> None:
    conv = [{"role": "system", "content": "You are terse."}]
    for i in range(10):
        conv += [
            {"role": "user", "content": f"q{i} " + "w" * 396},
            {"role": "assistant", "content": f"a{i} " + "w" * 396},
        ]
    per_turn = approx_tokens(conv[1]) + approx_tokens(conv[2])
    budget = approx_tokens(conv[0]) + 3 * per_turn + per_turn // 2
    out = trim(conv, max_tokens=budget)
    assert out[0] == conv[0]
    assert out[1:] == conv[-6:]
    assert sum(approx_tokens(m) for m in out) <= budget


def test_newest_turn_is_sent_even_over_budget() -> None:
    conv = _conversation(turns=2) + [{"role": "user", "content": "z" * 10_000}]
    out = trim(conv, max_tokens=50, max_messages=0)
    assert out == [conv[0], conv[-1]]


def test_fit_says_how_much_of_the_history_it_sent() -> None:
    conv = _conversation(turns=4) + [{"role": "user", "content": "next"}]
    fitted = fit(conv, max_messages=3)
    assert fitted.messages == trim(conv, max_messages=3) == [conv[0], *conv[-3:]]
    assert (fitted.history_sent, fitted.history_total, fitted.trimmed) == (2, 8, True)
    whole = fit(conv)
    assert (whole.history_sent, whole.history_total, whole.trimmed) == (8, 8, False)


def test_the_default_history_budget_and_how_to_lift_it() -> None:
    assert history_budget(None) == DEFAULT_MAX_HISTORY_TOKENS == 8_000
    assert history_budget(None, context_window=128_000) == 32_000  # sized to a known model
    assert history_budget(None, context_window=8_192) == DEFAULT_MAX_HISTORY_TOKENS
    assert history_budget(2_000) == 2_000
    assert history_budget(0) is None  # 0: no limit


def test_trimming_random_conversations_keeps_them_sendable() -> None:
    rng = random.Random(7)
    for _ in range(300):
        conv = _random_conversation(rng)
        max_messages = rng.choice([None, 0, 1, 3, 6, 12])
        max_tokens = rng.choice([None, 10, 60, 200, 1000])
        out = trim(conv, max_messages=max_messages, max_tokens=max_tokens)
        _assert_sendable(out)
        systems = [m for m in conv if m["role"] == "system"]
        assert out[: len(systems)] == systems
        rest = out[len(systems) :]
        repaired = [m for m in repair_tool_calls(conv) if m["role"] != "system"]
        assert rest == repaired[len(repaired) - len(rest) :]  # only the oldest are dropped
        if repaired:
            assert rest[-1] == repaired[-1]
        newest = len(repaired) - max(
            (i for i, m in enumerate(repaired) if m["role"] == "user"), default=0
        )
        if len(rest) > newest:  # more than the prompt being answered: within both budgets
            assert max_messages is None or len(rest) <= max_messages
            assert max_tokens is None or sum(approx_tokens(m) for m in out) <= max_tokens
        if len(rest) < len(repaired) and any(m["role"] == "user" for m in repaired):
            assert rest[0]["role"] == "user"  # a cut history starts with a question


# -- helpers ---------------------------------------------------------------------------------


def _call(call_id: str, name: str = "weather", args: str = '{"city": "Paris"}') -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def _result(call_id: str) -> dict:
    return {"role": "tool", "tool_call_id": call_id, "content": json.dumps({"temp": 21})}


def _conversation(turns: int, tool_rounds: int = 0) -> list[dict]:
    conv = [{"role": "system", "content": "Be helpful."}]
    for t in range(turns):
        conv.append({"role": "user", "content": f"question {t}"})
        for r in range(tool_rounds):
            ids = [f"t{t}r{r}a", f"t{t}r{r}b"]
            conv.append(
                {"role": "assistant", "content": None, "tool_calls": [_call(i) for i in ids]}
            )
            conv += [_result(i) for i in ids]
        conv.append({"role": "assistant", "content": f"answer {t}"})
    return conv


def _random_conversation(rng: random.Random) -> list[dict]:
    conv: list[dict] = []
    if rng.random() < 0.7:
        conv.append({"role": "system", "content": "sys " * rng.randint(1, 30)})
    n = 0
    for _ in range(rng.randint(0, 8)):
        kind = rng.choice(["user", "user", "answer", "tools", "tools", "stray"])
        text = "w" * rng.randint(0, 300)
        if kind == "user":
            conv.append({"role": "user", "content": text})
        elif kind == "answer":
            conv.append({"role": "assistant", "content": text})
        elif kind == "tools":
            ids = [f"c{n}_{k}" for k in range(rng.randint(1, 3))]
            n += 1
            conv.append(
                {"role": "assistant", "content": None, "tool_calls": [_call(i) for i in ids]}
            )
            conv += [_result(i) for i in ids if rng.random() < 0.85]
        else:
            conv.append(_result("nobody"))
    return conv


def _assert_sendable(messages: list[dict]) -> None:
    """What the chat-completions API accepts: each call answered right after it, no orphans."""
    i = 0
    while i < len(messages):
        message = messages[i]
        assert message["role"] != "tool", f"tool result without its call at {i}"
        i += 1
        calls = message.get("tool_calls")
        if calls:
            answered = []
            while i < len(messages) and messages[i]["role"] == "tool":
                answered.append(messages[i]["tool_call_id"])
                i += 1
            assert sorted(answered) == sorted(c["id"] for c in calls)


@pytest.mark.parametrize("limit", [None, 5])
def test_trim_does_not_modify_its_input(limit: int | None) -> None:
    conv = _conversation(turns=3, tool_rounds=1)
    before = copy.deepcopy(conv)
    trim(conv, max_messages=limit)
    assert conv == before
