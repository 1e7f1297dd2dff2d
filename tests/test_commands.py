"""Line commands as a user meets them: slips caught before anything is sent, `offline` showing
where answers come from, `explain` on the last error, and a login kept for the next kernel.

Routing is checked as a pure function over the real command table, then through a real
in-process shell against the offline server (a slip sends nothing), and login without a way to
type through a real kernel whose stdin is off, as under nbconvert or papermill.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from IPython.core.error import UsageError

from clarifai_magic.commands import LineCommands, route
from clarifai_magic.config import MAGIC_CONTEXT
from clarifai_magic.output import Output
from clarifai_magic.routing import Command, no_args
from clarifai_magic.session import Session
from clarifai_magic.testing import OfflineServer, text

from .conftest import TEST_PAT
from .kernel_util import Kernel
from .test_magic import GPT4O, everything, run


@pytest.fixture
def table() -> dict[str, Any]:
    commands = LineCommands(
        Session(notebook_key=lambda: "nb"),
        output=Output(lambda: False),
        namespace=dict,
        set_aliases=lambda aliases: None,
        ask=lambda options, prompt: None,
    )
    # `help` is the magic's own command; the table here stands where the magic puts it.
    return {"help": Command("help", no_args, print, "options and commands"), **commands.table()}


# ------------------------------------------------------------------------ route, as a function


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("history", "history"),
        ("history analysis", "history"),
        ("offline", "offline"),
        ("offline on", "offline"),
        ("login --save", "login"),
        ("logout --forget", "logout"),
        ("tools add f g", "tools"),
        ("chat side -m gpt-4o", "chat"),
        ("explain", "explain"),
        ("explain -m gpt-4o", "explain"),
    ],
)
def test_command_lines_run_their_command(table: dict[str, Any], line: str, command: str) -> None:
    routed = route(line, table)
    assert not isinstance(routed, UsageError) and routed is not None
    assert routed.name == command


@pytest.mark.parametrize(
    "line",
    [
        "history of Rome",
        "chat about the weather",
        "tools for ML",
        "help me write a regex",
        "explain the error in my loop",
        "histroy of the Roman empire",
        "-- histroy",
        "-m gpt-4o models",
        "hello",  # close to nothing well enough (help is 0.67)
        "test",
        "Why?",
    ],
)
def test_questions_stay_questions(table: dict[str, Any], line: str) -> None:
    assert route(line, table) is None


@pytest.mark.parametrize(
    ("line", "meant"),
    [
        ("histroy", "`%clarifai history [NAME]`"),
        ("modles", "`%clarifai models`"),
        ("History", "`%clarifai history [NAME]`"),
        ("hlep", "`%clarifai help`"),
        ("histroy main", "`%clarifai history [NAME]`"),
        ("modles --help", "`%clarifai models`"),
        ("tools frob", "`%clarifai tools add F G | remove F | list | show F`"),
        ("tools lsit", "`%clarifai tools list`"),
        ("offline maybe", "`%clarifai offline [on|off|auto]`"),
        ("offline onn", "`%clarifai offline on`"),
        ("models --help", "`%clarifai models`"),
        ("login --sav", "`%clarifai login --save`"),
        ("explain X", "`%clarifai explain [-m MODEL] [--chat NAME] [--no-history]`"),
    ],
)
def test_slips_are_one_line_usage_errors_saying_what_was_meant(
    table: dict[str, Any], line: str, meant: str
) -> None:
    routed = route(line, table)
    assert isinstance(routed, UsageError)
    message = str(routed)
    assert f"Did you mean {meant}" in message
    assert f"`%clarifai -- {line}`" in message  # how to ask it after all
    assert "\n" not in message


# ---------------------------------------------------------------- through the magic, in a shell


@pytest.mark.parametrize(
    ("line", "meant"),
    [
        ("histroy", "%clarifai history [NAME]"),
        ("modles", "%clarifai models"),
        ("tools frob", "%clarifai tools add F G | remove F | list | show F"),
        ("offline maybe", "%clarifai offline [on|off|auto]"),
        ("models --help", "%clarifai models"),
    ],
)
def test_a_slip_is_reported_and_nothing_is_sent_or_stored(
    shell: Any, server: OfflineServer, line: str, meant: str
) -> None:
    out = run(shell, f"%clarifai {line}")
    assert "UsageError" in out.stderr and meant in out.stderr and "Did you mean" in out.stderr
    assert "Traceback" not in everything(out)
    assert server.chat_requests == []
    assert "No conversations yet." in everything(run(shell, "%clarifai chats"))


@pytest.mark.parametrize(
    ("line", "sent"),
    [
        ("help me write a regex", "help me write a regex"),
        ("history of Rome in 3 lines", "history of Rome in 3 lines"),
        ("usage of numpy arrays", "usage of numpy arrays"),
        ("tools for ML", "tools for ML"),
        ("chat about the weather", "chat about the weather"),
        ("-- histroy", "histroy"),
        ("-- models --help", "models --help"),
    ],
)
def test_questions_that_look_like_commands_are_asked(
    shell: Any, server: OfflineServer, line: str, sent: str
) -> None:
    server.enqueue(text("ok"))
    out = run(shell, f"%clarifai {line}")
    assert out.result.success, out.stderr
    assert server.chat_requests[-1].json["messages"][-1]["content"] == sent


def test_offline_without_an_argument_says_where_answers_come_from(
    shell: Any, server: OfflineServer
) -> None:
    out = run(shell, "%clarifai offline")
    assert out.stdout.startswith("Offline mode is off: questions go to ")
    assert server.base_url in out.stdout and "CLARIFAI_PAT environment variable" in out.stdout
    server.enqueue(text("still online"))
    run(shell, "%%clarifai\nHello")
    assert len(server.chat_requests) == 1  # showing the state switched nothing
    try:
        assert "Offline mode on" in run(shell, "%clarifai offline on").stdout
        state = run(shell, "%clarifai offline").stdout
        assert state.startswith("Offline mode is on:") and "SCRIPTED" in state
    finally:
        run(shell, "%clarifai offline off")
    assert "Offline mode is off" in run(shell, "%clarifai offline").stdout
    assert TEST_PAT not in state


def test_offline_state_without_a_pat_says_how_to_get_going(
    shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLARIFAI_PAT")
    state = run(shell, "%clarifai offline").stdout
    assert "no PAT is set" in state and "%clarifai offline on" in state


# ------------------------------------------------------------------------------------ explain


def test_explain_sends_the_error_and_the_failing_code_and_streams_the_answer(
    shell: Any, server: OfflineServer
) -> None:
    shell.user_ns["label"] = "NOT-INTERPOLATED"
    failed = run(shell, "prices = [3, 5]\nprint(f'{label}')\ntotal = prices[7]")
    assert not failed.result.success
    server.enqueue(text("The list has two items; index 7 is past its end. Use prices[1]."))
    out = run(shell, "%clarifai explain")
    assert out.result.success, out.stderr
    assert "index 7 is past its end" in everything(out)
    question = server.chat_requests[-1].json["messages"][-1]["content"]
    assert "IndexError" in question and "list index out of range" in question
    assert "total = prices[7]" in question  # the failing cell's code
    assert "print(f'{label}')" in question and "NOT-INTERPOLATED" not in question
    assert "\x1b" not in question  # no terminal colours
    assert TEST_PAT not in json.dumps(server.chat_requests[-1].json)


def test_explain_never_sends_the_pat_even_when_the_error_holds_it(
    shell: Any, server: OfflineServer
) -> None:
    run(shell, "import os\nraise ValueError('bad token ' + os.environ['CLARIFAI_PAT'])")
    server.enqueue(text("Check the token."))
    run(shell, "%clarifai explain --no-history")
    sent = json.dumps(server.chat_requests[-1].json)
    assert "ValueError" in sent and "bad token" in sent
    assert TEST_PAT not in sent


def test_explain_with_a_model_and_a_long_traceback_is_bounded(
    shell: Any, server: OfflineServer
) -> None:
    run(shell, "def down(n):\n    return down(n + 1)\ndown(0)")
    server.enqueue(text("Unbounded recursion."))
    run(shell, "%clarifai explain -m gpt-4o --no-history")
    request = server.chat_requests[-1].json
    assert request["model"] == GPT4O
    question = request["messages"][-1]["content"]
    assert "RecursionError" in question and "down(0)" in question
    assert len(question) < 20_000


def test_explain_with_no_error_yet_says_so_and_sends_nothing(
    shell: Any, server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        monkeypatch.delattr(sys, name, raising=False)
    out = run(shell, "%clarifai explain")
    assert out.result.success
    assert "No error to explain yet" in out.stdout
    assert server.chat_requests == []


# --------------------------------------------------------------------------- keeping a login


def config_file(home: Path) -> Path:
    return home / ".config" / "clarifai" / "config"


def test_login_save_in_one_kernel_is_used_by_the_next_and_forget_removes_only_it(
    server: OfflineServer, kernel_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**kernel_env, "CLARIFAI_PAT": ""}  # no PAT in the environment
    path = config_file(tmp_path)
    path.parent.mkdir(parents=True)
    cli_context = {"env": {"CLARIFAI_USER_ID": "me", "CLARIFAI_API_BASE": "https://x.test"}}
    path.write_text(yaml.safe_dump({"current_context": "work", "contexts": {"work": cli_context}}))
    saved_pat = "saved-pat-5c81d0e2"

    first = Kernel(env)
    try:
        first.run("%load_ext clarifai_magic")
        msg_id = first.kc.execute("%clarifai login --save", allow_stdin=True)
        request = first.kc.get_stdin_msg(timeout=60)
        assert request["content"]["password"] is True  # not echoed
        first.kc.input(saved_pat)
        shown = first.collect(msg_id)
        assert shown.reply["content"]["status"] == "ok", shown.error
        assert "saved the PAT in" in shown.stdout and saved_pat not in str(shown.messages)
    finally:
        first.shutdown()

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = yaml.safe_load(path.read_text())
    assert data["current_context"] == "work" and data["contexts"]["work"] == cli_context
    assert data["contexts"][MAGIC_CONTEXT]["env"]["CLARIFAI_PAT"] == saved_pat

    second = Kernel(env)
    try:
        second.run("%load_ext clarifai_magic")
        server.enqueue(text("Hello from the saved login."))
        asked = second.run("%%clarifai\nHello")
        assert asked.reply["content"]["status"] == "ok", asked.error
        assert server.chat_requests[-1].headers["authorization"] == f"Bearer {saved_pat}"

        forgot = second.run("%clarifai logout --forget")
        assert "removed the saved one" in forgot.stdout
        data = yaml.safe_load(path.read_text())
        assert data == {"current_context": "work", "contexts": {"work": cli_context}}

        again = second.run("%%clarifai\nHello")
        assert again.reply["content"]["status"] == "error"
        assert "No Clarifai Personal Access Token" in str(again.messages)
        assert len(server.chat_requests) == 1
    finally:
        second.shutdown()


def test_login_save_creates_a_private_config_the_cli_can_read(
    shell: Any, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In-process there is no kernel stdin: this is the terminal's getpass, given a line.
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "typed-pat-91a7c3e0")
    out = run(shell, "%clarifai login --save")
    assert "typed-pat-91a7c3e0" not in everything(out)
    path = config_file(env)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = yaml.safe_load(path.read_text())
    assert data["current_context"] == MAGIC_CONTEXT  # no other context, so the CLI uses it
    assert data["contexts"][MAGIC_CONTEXT]["env"]["CLARIFAI_PAT"] == "typed-pat-91a7c3e0"
    assert "CLARIFAI_PAT is also set in the environment" in out.stdout
    assert "removed the saved one" in run(shell, "%clarifai logout --forget").stdout
    assert not path.exists()  # it held nothing else


def test_login_save_without_pyyaml_says_how_and_keeps_the_session_login(
    shell: Any, server: OfflineServer, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "typed-pat-0b6e2d44")
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed
    out = run(shell, "%clarifai login --save")
    assert not out.result.success
    assert "pip install pyyaml" in out.stdout and "Traceback" not in everything(out)
    assert not config_file(env).exists()
    server.enqueue(text("ok"))
    run(shell, "%%clarifai\nq")
    assert server.chat_requests[-1].headers["authorization"] == "Bearer typed-pat-0b6e2d44"
    run(shell, "%clarifai logout")


def test_login_without_a_way_to_type_says_how_to_set_the_pat(
    server: OfflineServer, kernel_env: dict[str, str]
) -> None:
    kernel = Kernel({**kernel_env, "CLARIFAI_PAT": ""})
    try:
        kernel.run("%load_ext clarifai_magic")
        out = kernel.run("%clarifai login")  # allow_stdin=False, as under nbconvert/papermill
        assert out.reply["content"]["status"] == "error"
        message = str(out.error)
        for hint in ("CLARIFAI_PAT", "%clarifai login --save", "%clarifai offline on"):
            assert hint in message
        assert "Traceback" not in out.stdout + out.stderr + str(out.error["traceback"])
        assert server.chat_requests == []
    finally:
        kernel.shutdown()


def test_login_without_a_way_to_type_is_fine_when_a_pat_is_set(kernel: Kernel) -> None:
    kernel.run("%load_ext clarifai_magic")
    out = kernel.run("%clarifai login")
    assert out.reply["content"]["status"] == "ok", out.error
    assert "using the PAT from CLARIFAI_PAT environment variable" in out.stdout
    assert TEST_PAT not in str(out.messages)
