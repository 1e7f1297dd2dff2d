"""Per-notebook conversations through the magic: remembered, persisted, in the user's control."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from clarifai_magic.history import DEFAULT_MAX_HISTORY_TOKENS, approx_tokens
from clarifai_magic.store import Store
from clarifai_magic.testing import OfflineServer, text

from .kernel_util import Kernel
from .test_magic import everything, final_markdown, run


def sent_messages(server: OfflineServer) -> list[dict[str, Any]]:
    return server.chat_requests[-1].json["messages"]


def ask(shell: Any, server: OfflineServer, cell: str, reply: str) -> Any:
    server.enqueue(text(reply))
    out = run(shell, cell)
    assert out.result.success, out.stderr
    return out


def test_consecutive_cells_form_one_conversation(shell: Any, server: OfflineServer) -> None:
    ask(shell, server, "%%clarifai\nMy name is Ada.", "Hello Ada.")
    ask(shell, server, "%%clarifai\nWhat is my name?", "Ada.")
    assert sent_messages(server) == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "What is my name?"},
    ]


def test_named_chats_new_and_no_history(shell: Any, server: OfflineServer) -> None:
    ask(shell, server, "%%clarifai\nmain one", "m1")
    ask(shell, server, "%%clarifai --chat side\nside one", "s1")
    assert sent_messages(server) == [{"role": "user", "content": "side one"}]
    ask(shell, server, "%%clarifai --no-history\none-off", "o1")
    assert sent_messages(server) == [{"role": "user", "content": "one-off"}]
    ask(shell, server, "%%clarifai\nmain two", "m2")
    assert [m["content"] for m in sent_messages(server)] == ["main one", "m1", "main two"]
    ask(shell, server, "%%clarifai --chat side --new\nfresh", "s2")
    assert sent_messages(server) == [{"role": "user", "content": "fresh"}]


def test_system_prompt_belongs_to_the_conversation(shell: Any, server: OfflineServer) -> None:
    ask(shell, server, '%%clarifai -s "Answer in French."\nHello', "Bonjour")
    ask(shell, server, "%%clarifai\nThanks", "Merci")
    assert sent_messages(server)[0] == {"role": "system", "content": "Answer in French."}
    ask(shell, server, "%%clarifai --chat other\nHi", "Hi")
    assert sent_messages(server)[0]["role"] == "user"


def test_history_undo_reset_fork_chats_usage(shell: Any, server: OfflineServer) -> None:
    ask(shell, server, "%%clarifai\nfirst question", "first answer")
    ask(shell, server, "%%clarifai\nsecond question", "second answer")
    history = everything(run(shell, "%clarifai history"))
    assert history.index("first question") < history.index("second answer")

    out = run(shell, "%clarifai fork branch")
    assert "branch" in out.stdout
    out = run(shell, "%clarifai undo")
    assert "2 messages" in out.stdout
    ask(shell, server, "%%clarifai\nthird", "3")
    assert [m["content"] for m in sent_messages(server)] == [
        "first question",
        "first answer",
        "third",
    ]

    ask(shell, server, "%%clarifai --chat branch\nfrom branch", "b")
    assert "second answer" in [m["content"] for m in sent_messages(server)]

    chats = everything(run(shell, "%clarifai chats"))
    assert "| main | 4 |" in chats and "| branch | 6 |" in chats
    usage = everything(run(shell, "%clarifai usage"))
    assert "openai/chat-completion/models/gpt-4o" in usage

    run(shell, "%clarifai reset")
    ask(shell, server, "%%clarifai\nafter reset", "r")
    assert sent_messages(server) == [{"role": "user", "content": "after reset"}]
    out = run(shell, "%clarifai history nosuchchat")
    assert "no conversation 'nosuchchat'" in out.stdout + out.stderr


def test_history_budget_trims_what_is_sent_not_what_is_stored(
    shell: Any, server: OfflineServer
) -> None:
    for i in range(4):
        ask(shell, server, f"%%clarifai\nq{i}", f"a{i}")
    run(shell, "%config ClarifaiMagics.max_history = 3")
    ask(shell, server, "%%clarifai\nq4", "a4")
    assert [m["content"] for m in sent_messages(server)] == ["q3", "a3", "q4"]
    history = everything(run(shell, "%clarifai history"))
    assert "q0" in history and "a4" in history
    run(shell, "%config ClarifaiMagics.max_history = None")


def test_a_long_conversation_sends_the_default_budget_and_says_so(
    shell: Any, server: OfflineServer
) -> None:
    page = "word " * 1600  # about 2,000 tokens
    for i in range(5):
        ask(shell, server, f"%%clarifai\nq{i} {page}", f"a{i}")
    out = ask(shell, server, "%%clarifai\nAnd now?", "ok")
    sent = sent_messages(server)
    assert sent[-1]["content"] == "And now?" and sent[0]["content"].startswith("q2 ")
    assert sum(approx_tokens(m) for m in sent) <= DEFAULT_MAX_HISTORY_TOKENS
    notice = f"Sent the last {len(sent) - 1} of 10 messages (history budget 8,000 tokens"
    assert notice in final_markdown(out)
    assert "max_history_tokens" in final_markdown(out).replace("\\", "")

    run(shell, "%config ClarifaiMagics.max_history_tokens = 0")  # no limit
    try:
        out = ask(shell, server, "%%clarifai\nEverything?", "all")
        assert len(sent_messages(server)) == 13
        assert "Sent the last" not in final_markdown(out)
    finally:
        run(shell, "%config ClarifaiMagics.max_history_tokens = None")


def test_interrupted_or_failed_answer_is_stored_as_partial(
    shell: Any, server: OfflineServer
) -> None:
    from clarifai_magic.testing import mid_stream_error

    server.enqueue(mid_stream_error("half of it "))
    run(shell, "%%clarifai\nTell me")
    ask(shell, server, "%%clarifai\nGo on", "rest")
    assert [m["content"] for m in sent_messages(server)] == ["Tell me", "half of it ", "Go on"]
    assert "(partial)" in everything(run(shell, "%clarifai history"))


def test_corrupt_database_is_moved_aside_and_the_magic_keeps_working(
    shell: Any, server: OfflineServer, env: Path
) -> None:
    home = env / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "conversations.db").write_bytes(b"this is not a database" * 100)
    out = ask(shell, server, "%%clarifai\nHello", "Hi")
    assert "moved" in out.stderr.lower()
    assert list(home.glob("conversations.db.corrupt-*"))
    assert final_markdown(out).startswith("Hi")


def test_conversation_survives_a_kernel_restart(server: OfflineServer, kernel: Kernel) -> None:
    kernel.run("%load_ext clarifai_magic")
    server.enqueue(text("Noted: 42."))
    kernel.run("%%clarifai\nRemember the number 42.")
    kernel.restart()
    kernel.run("%load_ext clarifai_magic")
    server.enqueue(text("It was 42."))
    run_ = kernel.run("%%clarifai\nWhich number?")
    assert "It was 42." in run_.last_markdown
    assert [m["content"] for m in sent_messages(server)] == [
        "Remember the number 42.",
        "Noted: 42.",
        "Which number?",
    ]


def test_sigkill_mid_stream_keeps_everything_committed(
    server: OfflineServer, kernel: Kernel, kernel_env: dict[str, str]
) -> None:
    kernel.run("%load_ext clarifai_magic")
    server.enqueue(text("First answer."))
    kernel.run("%%clarifai\nFirst question")
    server.enqueue(text("slow " * 400, chunk_size=5, delay=0.03))
    msg_id = kernel.start("%%clarifai\nSecond question")
    kernel.wait_for(msg_id, lambda m: "slow slow slow" in str(m["content"]))
    time.sleep(1.5)  # past the engine's one-second checkpoint
    os.kill(kernel.km.provisioner.process.pid, signal.SIGKILL)
    kernel.km.provisioner.process.wait(timeout=10)

    store = Store(Path(kernel_env["CLARIFAI_MAGIC_HOME"]) / "conversations.db")
    conv = store.conversation(kernel_env["JPY_SESSION_NAME"], "main", create=False)
    stored = store.messages(conv)
    store.close()
    assert [m.message["content"][:20] for m in stored[:3]] == [
        "First question",
        "First answer.",
        "Second question",
    ]
    assert stored[3].partial and stored[3].message["content"].startswith("slow slow")


def test_a_renamed_notebook_gets_its_conversation_back(
    shell: Any, server: OfflineServer, tmp_path: Path
) -> None:
    old, new = str(tmp_path / "draft.ipynb"), str(tmp_path / "final.ipynb")
    shell.user_ns["__session__"] = old
    ask(shell, server, "%%clarifai\nRemember 7.", "Noted.")
    shell.user_ns["__session__"] = new  # Jupyter renamed the notebook
    listing = everything(run(shell, "%clarifai notebooks"))
    assert old in listing and "fork NEW --from NAME --notebook KEY" in listing
    out = run(shell, f"%clarifai fork main --from main --notebook {old}")
    assert out.result.success, out.stdout + out.stderr
    ask(shell, server, "%%clarifai\nWhich number?", "7.")
    sent = [m["content"] for m in sent_messages(server)]
    assert sent == ["Remember 7.", "Noted.", "Which number?"]
    out = run(shell, "%clarifai fork x --from nope --notebook /no/such.ipynb")
    assert "There is no conversation 'nope' in notebook" in out.stdout + out.stderr
