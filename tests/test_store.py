"""The conversation store (clarifai_magic.store): persistence, crashes, concurrency, corruption."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from clarifai_magic.store import MIGRATIONS, Conversation, Store, StoreError, default_path

NB = "work/analysis.ipynb"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "conversations.db"


@pytest.fixture
def store(db_path: Path):
    with Store(db_path) as s:
        yield s


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def texts(store: Store, conv: Conversation) -> list[str]:
    return [m.message["content"] for m in store.messages(conv)]


# -- where and how the file is kept ----------------------------------------------------------


def test_default_path_follows_environment_and_platform() -> None:
    env = {"HOME": "/home/ada"}
    assert default_path(env, "linux") == Path(
        "/home/ada/.local/share/clarifai-magic/conversations.db"
    )
    assert default_path({**env, "XDG_DATA_HOME": "/xdg"}, "linux") == Path(
        "/xdg/clarifai-magic/conversations.db"
    )
    assert default_path(env, "darwin") == Path(
        "/home/ada/Library/Application Support/clarifai-magic/conversations.db"
    )
    win = {"USERPROFILE": "C:/Users/ada", "LOCALAPPDATA": "C:/Users/ada/AppData/Local"}
    assert default_path(win, "win32") == Path(
        "C:/Users/ada/AppData/Local/clarifai-magic/conversations.db"
    )
    override = {**env, "XDG_DATA_HOME": "/xdg", "CLARIFAI_MAGIC_HOME": "/srv/cm"}
    assert default_path(override, "linux") == Path("/srv/cm/conversations.db")


def test_default_store_honours_clarifai_magic_home(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CLARIFAI_MAGIC_HOME", str(tmp_path / "home"))
    with Store() as s:
        assert s.path == tmp_path / "home" / "conversations.db"
        s.append(s.conversation(NB), [user("hi")])
    assert (tmp_path / "home" / "conversations.db").is_file()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_file_is_private_and_in_wal_mode(db_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with Store(db_path) as s:
            s.append(s.conversation(NB), [user("secret plans")])
            assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
            assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700
            wal = Path(f"{db_path}-wal")
            assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o600
    finally:
        os.umask(old)
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrations_run_once_and_are_recorded(db_path: Path) -> None:
    for _ in range(3):
        Store(db_path).close()
    with sqlite3.connect(db_path) as db:
        names = [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY name")]
    assert names == [m.__name__ for m in MIGRATIONS]
    assert names[0] == "m001_initial"


# -- conversations -------------------------------------------------------------------------


def test_conversation_survives_a_restart(db_path: Path) -> None:
    with Store(db_path) as s:
        conv = s.conversation(NB)
        s.set_system_prompt(conv, "Answer in French.")
        s.append(conv, [user("hello"), assistant("bonjour")], model="m/gpt", usage=(12, 3))
    with Store(db_path) as s:
        conv = s.conversation(NB)
        assert conv == Conversation(NB, "main", "Answer in French.", "m/gpt")
        stored = s.messages(conv)
        assert [m.message for m in stored] == [user("hello"), assistant("bonjour")]
        assert [(m.partial, m.model) for m in stored] == [(False, "m/gpt")] * 2
        assert (stored[1].prompt_tokens, stored[1].completion_tokens) == (12, 3)
        assert stored[0].prompt_tokens is None


def test_named_conversations_and_notebooks_are_separate(store: Store) -> None:
    main, side, other = (
        store.conversation(NB),
        store.conversation(NB, "side"),
        store.conversation("other.ipynb"),
    )
    store.set_system_prompt(side, "Be brief.")
    store.append(main, [user("a")])
    store.append(side, [user("b")])
    store.append(other, [user("c")])
    assert (texts(store, main), texts(store, side), texts(store, other)) == (["a"], ["b"], ["c"])
    assert store.conversation(NB).system_prompt is None
    assert store.conversation(NB, "side").system_prompt == "Be brief."
    assert store.conversation(NB, "nope", create=False) is None
    assert "nope" not in [c.name for c in store.chats(NB)]


def test_messages_keep_structure(store: Store) -> None:
    conv = store.conversation(NB)
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    exchange = [
        {"role": "user", "content": [{"type": "text", "text": "Ünïcode ✓"}]},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "name": "f", "content": '{"ok": true}'},
        assistant("done"),
    ]
    store.append(conv, exchange)
    assert [m.message for m in store.messages(conv)] == exchange


def test_bad_messages_are_refused_without_storing_anything(store: Store) -> None:
    conv = store.conversation(NB)
    with pytest.raises(ValueError, match="role"):
        store.append(conv, [user("fine"), {"role": "robot", "content": "x"}])
    with pytest.raises(ValueError, match="JSON"):
        store.append(conv, [user("fine"), {"role": "user", "content": object()}])
    with pytest.raises(ValueError):
        store.append(conv, [])
    assert store.messages(conv) == []


def test_answer_follows_its_question_when_another_kernel_wrote_between(db_path: Path) -> None:
    with Store(db_path) as a, Store(db_path) as b:
        conv_a, conv_b = a.conversation(NB), b.conversation(NB)
        ex_a = a.append(conv_a, [user("question A")])
        ex_b = b.append(conv_b, [user("question B")])
        a.append(conv_a, [assistant("answer A")], exchange=ex_a)
        b.append(conv_b, [assistant("answer B")], exchange=ex_b)
        expected = ["question A", "answer A", "question B", "answer B"]
        assert texts(a, conv_a) == texts(b, conv_b) == expected


def test_partial_answer_is_a_checkpoint_replaced_by_the_final_one(store: Store) -> None:
    conv = store.conversation(NB)
    ex = store.append(conv, [user("tell me a story")])
    store.append(conv, [assistant("Once")], exchange=ex, partial=True)
    store.append(conv, [assistant("Once upon")], exchange=ex, partial=True)
    assert [(m.message["content"], m.partial) for m in store.messages(conv)] == [
        ("tell me a story", False),
        ("Once upon", True),
    ]
    store.append(conv, [assistant("Once upon a time.")], exchange=ex, usage=(5, 4))
    assert [(m.message["content"], m.partial) for m in store.messages(conv)] == [
        ("tell me a story", False),
        ("Once upon a time.", False),
    ]


def test_answer_to_a_reset_conversation_is_dropped(store: Store) -> None:
    conv = store.conversation(NB)
    ex = store.append(conv, [user("old question")])
    store.reset(conv)  # e.g. --new from another kernel while this one was answering
    store.append(conv, [user("new question")])
    store.append(conv, [assistant("old answer")], exchange=ex, model="m", usage=(7, 3))
    assert texts(store, conv) == ["new question"]
    assert [(u.prompt_tokens, u.completion_tokens) for u in store.usage(NB)] == [(7, 3)]


def test_reset_forgets_messages_but_keeps_system_prompt_and_usage(store: Store) -> None:
    conv = store.conversation(NB)
    store.set_system_prompt(conv, "Be kind.")
    store.append(conv, [user("q"), assistant("a")], model="m1", usage=(100, 20))
    assert store.reset(conv) == 2
    assert store.messages(conv) == []
    assert store.conversation(NB).system_prompt == "Be kind."
    assert [(u.prompt_tokens, u.completion_tokens) for u in store.usage(NB)] == [(100, 20)]


def test_undo_drops_last_user_message_and_everything_after(store: Store) -> None:
    conv = store.conversation(NB)
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    store.append(conv, [user("q1"), assistant("a1")])
    store.append(
        conv,
        [
            user("q2"),
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c", "content": "1"},
            assistant("a2"),
        ],
    )
    assert store.undo(conv) == 4
    assert texts(store, conv) == ["q1", "a1"]
    assert store.undo(conv) == 2
    assert store.undo(conv) == 0
    assert store.messages(conv) == []


def test_drop_exchange_removes_a_failed_question_only(db_path: Path) -> None:
    with Store(db_path) as a, Store(db_path) as b:
        conv_a, conv_b = a.conversation(NB), b.conversation(NB)
        a.append(conv_a, [user("q1"), assistant("a1")])
        failed = a.append(conv_a, [user("q2 (request failed)")])
        later = b.append(conv_b, [user("q3 from another kernel")])  # stored after it
        b.append(conv_b, [assistant("a3")], exchange=later)
        assert a.drop_exchange(conv_a, failed) == 1
        assert texts(a, conv_a) == texts(b, conv_b) == ["q1", "a1", "q3 from another kernel", "a3"]
        assert a.drop_exchange(conv_a, failed) == 0  # already gone: nothing else is touched
        assert a.drop_exchange(Conversation(NB, "never used"), failed) == 0
        assert [c.name for c in a.chats(NB)] == ["main"]  # and it was not created
        # An answer arriving for the dropped question is not stored.
        a.append(conv_a, [assistant("late")], exchange=failed)
        assert texts(a, conv_a) == ["q1", "a1", "q3 from another kernel", "a3"]


def test_fork_copies_messages_and_system_prompt_but_not_the_bill(store: Store) -> None:
    conv = store.conversation(NB)
    store.set_system_prompt(conv, "Pirate voice.")
    ex = store.append(conv, [user("q1")])
    store.append(conv, [assistant("a1")], exchange=ex, model="m1", usage=(10, 5))
    fork = store.fork(conv, "try2")
    assert fork == Conversation(NB, "try2", "Pirate voice.", "m1")
    assert texts(store, fork) == ["q1", "a1"]
    store.append(fork, [user("q2")])
    assert texts(store, conv) == ["q1", "a1"]  # the original is untouched
    assert texts(store, fork) == ["q1", "a1", "q2"]
    assert undo_then(store, fork) == ["q1", "a1"]
    assert [(u.conversation, u.prompt_tokens) for u in store.usage(NB)] == [("main", 10)]
    with pytest.raises(ValueError, match="already exists"):
        store.fork(conv, "try2")
    with pytest.raises(ValueError, match="already exists"):
        store.fork(conv, "main")


def undo_then(store: Store, conv: Conversation) -> list[str]:
    store.undo(conv)
    return texts(store, conv)


def test_renamed_notebook_can_take_its_conversations_along(store: Store) -> None:
    old = store.conversation("old name.ipynb")
    store.append(old, [user("q"), assistant("a")])
    assert [n.notebook_key for n in store.notebooks()] == ["old name.ipynb"]
    moved = store.fork(old, "main", notebook_key="new name.ipynb")
    assert texts(store, store.conversation("new name.ipynb")) == texts(store, moved) == ["q", "a"]


# -- exchanges of notebook cells ---------------------------------------------------------------


def ask_from(store: Store, conv: Conversation, cell: str, run: str, q: str, a: str) -> list[str]:
    """Ask ``q`` from execution ``run`` of ``cell`` as the session does; what went as context."""
    context = store.context(conv, cell=cell, run=run)
    ex = store.append(conv, [user(q)], cell=cell, run=run)
    store.append(conv, [assistant(a)], exchange=ex)
    return [m.message["content"] for m in context.messages]


def test_a_later_execution_of_a_cell_takes_its_exchanges_place(store: Store) -> None:
    conv = store.conversation(NB)
    for cell in "abc":
        ask_from(store, conv, cell, "run1", f"q{cell}", f"a{cell}")
    assert store.context(conv, cell="b", run="run2").replaces == 1
    assert ask_from(store, conv, "b", "run2", "qb2", "ab2") == ["qa", "aa"]
    assert texts(store, conv) == ["qa", "aa", "qb2", "ab2", "qc", "ac"]
    assert [m.cell for m in store.messages(conv)] == ["a", "a", "b", "b", "c", "c"]
    # Run All again: the same conversation, one run's worth.
    for cell in "abc":
        ask_from(store, conv, cell, "run3", f"q{cell}", f"a{cell}")
    assert texts(store, conv) == ["qa", "aa", "qb", "ab", "qc", "ac"]
    assert store.context(conv).messages == store.messages(conv)  # no cell: after everything


def test_questions_of_one_execution_stand_together(store: Store) -> None:
    conv = store.conversation(NB)
    ask_from(store, conv, "loop", "run1", "q1", "a1")
    ask_from(store, conv, "loop", "run1", "q2", "a2")
    ask_from(store, conv, "next", "run1", "q3", "a3")
    assert ask_from(store, conv, "loop", "run2", "r1", "b1") == []
    assert ask_from(store, conv, "loop", "run2", "r2", "b2") == ["r1", "b1"]
    assert ask_from(store, conv, "loop", "run2", "r3", "b3") == ["r1", "b1", "r2", "b2"]
    assert texts(store, conv) == ["r1", "b1", "r2", "b2", "r3", "b3", "q3", "a3"]
    fork = store.fork(conv, "copy")  # keeps the order
    assert texts(store, fork) == texts(store, conv)
    assert undo_then(store, conv) == ["r1", "b1", "r2", "b2", "r3", "b3"]


def test_an_unanswered_rerun_leaves_the_earlier_exchange(store: Store) -> None:
    conv = store.conversation(NB)
    ask_from(store, conv, "a", "run1", "q", "a")
    ex = store.append(conv, [user("again")], cell="a", run="run2")
    store.drop_exchange(conv, ex)  # the request failed before any answer
    assert texts(store, conv) == ["q", "a"]
    ex = store.append(conv, [user("again")], cell="a", run="run3")
    store.append(conv, [assistant("half")], exchange=ex, partial=True)  # a checkpoint replaces
    assert texts(store, conv) == ["again", "half"]


def test_a_deleted_cells_exchanges_are_kept_but_not_sent(store: Store) -> None:
    conv, side = store.conversation(NB), store.conversation(NB, "side")
    for cell in "abc":
        ask_from(store, conv, cell, "run1", f"q{cell}", f"a{cell}")
    ask_from(store, side, "b", "run1", "side q", "side a")
    other = store.conversation("other.ipynb")
    ask_from(store, other, "b", "run1", "other q", "other a")
    assert store.hide_cells(NB, ["b", "no-such-cell"]) == 4
    assert texts(store, conv) == ["qa", "aa", "qb", "ab", "qc", "ac"]
    assert [m.hidden for m in store.messages(conv)] == [False, False, True, True, False, False]
    assert [m.message["content"] for m in store.context(conv).messages] == ["qa", "aa", "qc", "ac"]
    assert store.context(side).messages == []
    assert len(store.context(other).messages) == 2  # another notebook's cell "b"
    # Brought back (JupyterLab's undo keeps the id) and run again: it takes its place.
    assert ask_from(store, conv, "b", "run2", "qb", "ab") == ["qa", "aa"]
    assert len(store.context(conv).messages) == 6


def test_a_database_from_before_cells_keeps_its_conversations(db_path: Path) -> None:
    from clarifai_magic.store_sqlite import connect_rw

    # The store as the previous release made it: the first migration, rows as it wrote them.
    db_path.parent.mkdir(mode=0o700)
    db = connect_rw(db_path, MIGRATIONS[:1], 5.0)
    with db:
        db.execute(
            "INSERT INTO conversations (notebook_key, name, system_prompt, model, created,"
            " updated) VALUES (?, 'main', 'Be brief.', 'm1', 1, 2), (?, 'side', NULL, NULL, 1, 3)",
            (NB, NB),
        )
        rows = [(1, 1, user("q1")), (1, 1, assistant("a1")), (1, 3, user("q2"))]
        rows += [(2, 4, user("side")), (1, 3, assistant("a2"))]
        for i, (cid, exchange, message) in enumerate(rows, start=1):
            db.execute(
                "INSERT INTO messages (id, conversation_id, exchange, role, message, created,"
                " model, prompt_tokens) VALUES (?, ?, ?, ?, ?, ?, 'm1', ?)",
                (i, cid, exchange, message["role"], json.dumps(message), i, 7 * i),
            )
        db.execute(
            "INSERT INTO usage (conversation_id, model, prompt_tokens, completion_tokens,"
            " created) VALUES (1, 'm1', 10, 2, 5)"
        )
    db.close()

    with Store(db_path) as s:
        conv = s.conversation(NB)
        assert conv == Conversation(NB, "main", "Be brief.", "m1")
        assert texts(s, conv) == ["q1", "a1", "q2", "a2"]
        assert [m.prompt_tokens for m in s.messages(conv)] == [7, 14, 21, 35]
        assert texts(s, s.conversation(NB, "side")) == ["side"]
        assert [(c.name, c.message_count) for c in s.chats(NB)] == [("side", 1), ("main", 4)]
        assert [(u.prompt_tokens, u.completion_tokens) for u in s.usage(NB)] == [(10, 2)]
        # and it goes on as before: new exchanges after the old ones, undo, fork
        s.append(conv, [user("q3"), assistant("a3")])
        assert undo_then(s, conv) == ["q1", "a1", "q2", "a2"]
        assert texts(s, s.fork(conv, "copy")) == ["q1", "a1", "q2", "a2"]
        ask_from(s, conv, "cell", "run1", "q4", "a4")
        assert texts(s, conv)[-2:] == ["q4", "a4"]


def test_chats_list_counts_and_most_recent_first(store: Store) -> None:
    first, second = store.conversation(NB, "first"), store.conversation(NB, "second")
    store.append(second, [user("1")])
    store.append(first, [user("1"), assistant("2"), user("3")], model="m2")
    chats = store.chats(NB)
    assert [(c.name, c.message_count, c.model) for c in chats] == [
        ("first", 3, "m2"),
        ("second", 1, None),
    ]
    assert chats[0].last_used >= chats[1].last_used > 0


def test_usage_per_conversation_and_model(store: Store) -> None:
    main, side = store.conversation(NB), store.conversation(NB, "side")
    store.append(main, [user("q"), assistant("a")], model="m1", usage=(10, 1))
    store.append(main, [user("q"), assistant("a")], model="m1", usage=(20, 2))
    store.append(main, [user("q"), assistant("a")], model="m2", usage=(5, None))
    store.append(side, [user("q"), assistant("a")], model="m1", usage=(1, 1))
    store.append(side, [user("no usage reported")], model="m1")
    rows = [
        (u.conversation, u.model, u.prompt_tokens, u.completion_tokens, u.responses)
        for u in store.usage(NB)
    ]
    assert rows == [("main", "m1", 30, 3, 2), ("main", "m2", 5, 0, 1), ("side", "m1", 1, 1, 1)]
    assert store.usage("another notebook") == []


def test_threads_share_one_store(store: Store) -> None:
    conv = store.conversation(NB)

    def work(w: int) -> None:
        for i in range(50):
            store.append(conv, [user(f"{w}:{i}"), assistant(f"{w}:{i}")])

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _assert_exchanges(texts(store, conv), writers=4, count=50)


# -- crashes and concurrent kernels ---------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from clarifai_magic.store import Store

    path, writer, count, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    store = Store(path)
    conv = store.conversation("nb")
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    for i in range(count):
        tag = f"{writer}:{i}"
        question, answer = {"role": "user", "content": tag}, {"role": "assistant", "content": tag}
        if mode == "atomic":
            store.append(conv, [question, answer])
        else:  # as a kernel does: question first, answer checkpointed while it streams, then final
            ex = store.append(conv, [question])
            for n in range(3):
                store.append(conv, [dict(answer, content=tag[:n])], exchange=ex, partial=True)
            store.append(conv, [answer], exchange=ex)
        print(i, flush=True)
    """
)


def _writer(path: Path, writer: str, count: int, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), writer, str(count), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _assert_exchanges(contents: list[str], writers: int, count: int) -> None:
    """Each question directly followed by its answer, each writer's exchanges in order."""
    assert len(contents) == 2 * writers * count
    questions = contents[0::2]
    assert contents[1::2] == questions
    for w in range(writers):
        mine = [q for q in questions if q.startswith(f"{w}:")]
        assert mine == [f"{w}:{i}" for i in range(count)]


@pytest.mark.parametrize("mode", ["atomic", "two_phase"])
def test_two_processes_writing_one_conversation_never_interleave(db_path: Path, mode: str) -> None:
    Store(db_path).close()
    count = 120
    procs = [_writer(db_path, str(w), count, mode) for w in range(2)]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        proc.communicate(timeout=60)
        assert proc.returncode == 0
    with Store(db_path) as s:
        stored = s.messages(s.conversation("nb"))
        assert not any(m.partial for m in stored)
        _assert_exchanges([m.message["content"] for m in stored], writers=2, count=count)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
@pytest.mark.parametrize("mode", ["atomic", "two_phase"])
def test_killed_writer_loses_nothing_committed(db_path: Path, mode: str) -> None:
    proc = _writer(db_path, "0", 1_000_000, mode)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    done = -1
    while done < 150:
        done = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)  # most likely in the middle of a write
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stdin.close()

    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with Store(db_path) as s:
        assert s.notice is None
        stored = s.messages(s.conversation("nb"))
    contents = [m.message["content"] for m in stored]
    finished = (done + 1) * 2
    assert len(contents) >= finished
    _assert_exchanges(contents[:finished], writers=1, count=done + 1)
    # After the last reported exchange: whole exchanges, maybe one cut short, never torn rows.
    tail = stored[finished:]
    for k in range(0, len(tail) - 1, 2):
        assert tail[k].message["role"] == "user" and tail[k + 1].message["role"] == "assistant"
        assert tail[k + 1].partial or tail[k + 1].message == tail[k].message | {"role": "assistant"}


# -- corrupt and unusable files ----------------------------------------------------------------


def test_garbage_file_is_moved_aside_and_a_fresh_store_started(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not a database, it is a shopping list\n" * 200)
    Path(f"{db_path}-wal").write_bytes(b"stale wal")
    other_kernel = sqlite3.connect(db_path)  # still has the broken file open: its WAL stays
    with pytest.raises(sqlite3.DatabaseError):
        other_kernel.execute("SELECT * FROM sqlite_master")
    with Store(db_path) as s:
        assert s.notice is not None and "moved to" in s.notice
        conv = s.conversation(NB)
        s.append(conv, [user("still works")])
        assert texts(s, conv) == ["still works"]
        assert s.pop_notice() is not None and s.pop_notice() is None
    other_kernel.close()
    aside = sorted(db_path.parent.glob("conversations.db.corrupt-*"))
    assert [p.name for p in aside] == [aside[0].name + suffix for suffix in ("", "-shm", "-wal")]
    assert aside[0].read_bytes().startswith(b"this is not")
    assert aside[2].read_bytes() == b"stale wal"  # moved along, never replayed into the new one
    with Store(db_path) as s:  # the fresh one persists, and no further notice
        assert s.notice is None
        assert texts(s, s.conversation(NB)) == ["still works"]


def moved_databases(db_path: Path) -> list[Path]:
    """The databases moved aside next to ``db_path`` (without their WAL files)."""
    moved = db_path.parent.glob(f"{db_path.name}.corrupt-*")
    return [p for p in moved if not p.name.endswith(("-wal", "-shm"))]


OPENER = textwrap.dedent(
    """
    import sys
    from clarifai_magic.store import Store

    for path in sys.stdin:  # one database per line; every kernel gets it at the same moment
        with Store(path.strip()) as store:
            store.append(store.conversation("nb"), [{"role": "user", "content": sys.argv[1]}])
            print(store.notice, flush=True)
    """
)


def test_kernels_starting_together_on_a_corrupt_file_keep_every_message(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    kernels = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, str(k)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for k in range(6)
    ]
    try:
        for trial in range(8):
            path = tmp_path / str(trial) / "conversations.db"
            path.parent.mkdir()
            path.write_bytes(b"garbage " * 1000)
            for kernel in kernels:
                assert kernel.stdin is not None
                kernel.stdin.write(f"{path}\n")
                kernel.stdin.flush()
            notices = [kernel.stdout.readline() for kernel in kernels if kernel.stdout]
            assert not [n for n in notices if "memory" in n]
            with Store(path) as s:
                assert sorted(texts(s, s.conversation("nb"))) == [str(k) for k in range(6)]
            moved = [
                p for p in path.parent.glob("*.corrupt-*") if not p.name.endswith(("-wal", "-shm"))
            ]
            assert [p.read_bytes()[:8] for p in moved] == [b"garbage "]
    finally:
        for kernel in kernels:
            kernel.communicate(timeout=30)


def test_damaged_pages_found_while_reading_start_a_fresh_store(db_path: Path) -> None:
    with Store(db_path) as s:
        conv = s.conversation(NB)
        for i in range(300):
            s.append(conv, [user(f"q{i} " + "x" * 1000), assistant(f"a{i} " + "y" * 1000)])
    data = bytearray(db_path.read_bytes())
    page = 4096
    for offset in range(len(data) // 2, len(data) - page, page):  # message pages, not the schema
        data[offset : offset + page] = os.urandom(page)
    db_path.write_bytes(bytes(data))

    with Store(db_path) as a, Store(db_path) as b:  # two kernels have the damaged file open
        conv_a, conv_b = a.conversation(NB), b.conversation(NB)
        assert a.messages(conv_a) == []  # whatever was readable is in the moved file, not here
        assert a.notice is not None and "moved to" in a.notice
        a.append(conv_a, [user("fresh")])
        # b finds the damage later, and continues in a's fresh store instead of moving it too.
        assert texts(b, conv_b) == ["fresh"]
        assert b.notice is not None and "another kernel has replaced it" in b.notice
    assert len(moved_databases(db_path)) == 1


def test_unopenable_location_falls_back_to_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be")
    with Store(blocker / "conversations.db") as s:
        assert s.notice is not None and "in memory only" in s.notice
        conv = s.conversation(NB)
        s.append(conv, [user("q"), assistant("a")])
        assert texts(s, conv) == ["q", "a"]
    assert blocker.read_text() == "a file where the data directory should be"


def test_database_sqlite_cannot_open_is_moved_aside(db_path: Path) -> None:
    with Store(db_path) as s:
        s.append(s.conversation(NB), [user("old")])
    # Unopenable even for root (unlike a chmod): a directory where SQLite keeps the WAL.
    Path(f"{db_path}-wal").mkdir()
    with Store(db_path) as s:
        assert s.notice is not None and "moved to" in s.notice
        conv = s.conversation(NB)
        assert s.messages(conv) == []
        s.append(conv, [user("new")])
    assert len(moved_databases(db_path)) == 1
    with Store(db_path) as s:
        assert s.notice is None and texts(s, s.conversation(NB)) == ["new"]


def test_busy_database_is_reported_not_moved(db_path: Path) -> None:
    with Store(db_path, busy_timeout=0.2) as s:
        conv = s.conversation(NB)
        blocker = sqlite3.connect(db_path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another kernel holding the write lock
        try:
            with pytest.raises(StoreError, match="another kernel"):
                s.append(conv, [user("q")])
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        s.append(conv, [user("q")])
        assert texts(s, conv) == ["q"] and s.notice is None
    assert list(db_path.parent.glob("*.corrupt-*")) == []
