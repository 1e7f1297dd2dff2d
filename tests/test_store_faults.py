"""The conversation store under faults: interrupts, another kernel's lock, planted symbolic
links, read-only files and directories, a full disk. Each ends with the store still usable."""

from __future__ import annotations

import _thread
import functools
import hashlib
import itertools
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from clarifai_magic.offline import OfflineServer, text
from clarifai_magic.store import Conversation, Store, StoreError, StoreInterrupted

from .kernel_util import Kernel

NB = "work/analysis.ipynb"
ROOT = Path(__file__).resolve().parents[1]
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals, modes and links")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "conversations.db"


def user(content: str) -> dict:
    return {"role": "user", "content": content}


def texts(store: Store, name: str = "main") -> list[str]:
    conv = store.conversation(NB, name, create=False)
    return [m.message["content"] for m in store.messages(conv)] if conv else []


def lock_is_free(db_path: Path) -> bool:
    """Whether another kernel could take the write lock right now, without waiting."""
    other = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


HOLDER = textwrap.dedent(
    """
    import sqlite3, sys

    db = sqlite3.connect(sys.argv[1], isolation_level=None)
    db.execute("BEGIN IMMEDIATE")  # another kernel in the middle of a write
    print("locked", flush=True)
    sys.stdin.readline()
    db.execute("ROLLBACK")
    print("released", flush=True)
    """
)


@pytest.fixture
def holder(db_path: Path) -> Iterator[subprocess.Popen]:
    """Another process holding the store's write lock until told to let go."""
    with Store(db_path) as store:
        store.conversation(NB)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    yield proc
    release(proc)


def release(proc: subprocess.Popen) -> None:
    if proc.returncode is None:
        proc.communicate("go\n", timeout=30)


# -- interrupts ------------------------------------------------------------------------------


@POSIX
def test_interrupt_while_another_process_holds_the_lock(
    db_path: Path, holder: subprocess.Popen
) -> None:
    # A wait long enough that only the interrupt can end it: SQLite's own busy wait used to
    # swallow it for the whole timeout.
    with Store(db_path, busy_timeout=60.0) as store:
        conv = store.conversation(NB)
        previous = signal.signal(signal.SIGALRM, signal.default_int_handler)  # Stop, as SIGINT
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        # If the interrupt is not let in, release the lock so the test ends (and fails).
        watchdog = threading.Timer(20, release, (holder,))
        watchdog.start()
        try:
            with pytest.raises(KeyboardInterrupt) as caught:
                store.append(conv, [user("asked while another kernel writes")])
        finally:
            watchdog.cancel()
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        assert holder.returncode is None, "the interrupt was not let in during the wait"
        assert isinstance(caught.value, StoreInterrupted)
        assert not isinstance(caught.value, Exception)  # no `except Exception` swallows a Stop
        assert "waiting for the conversation store" in str(caught.value)
        assert "store is fine" in str(caught.value)
        release(holder)
        # This kernel writes again, holds no lock afterwards, and nothing half-made was kept.
        store.append(conv, [user("after the other kernel is done")])
        assert texts(store) == ["after the other kernel is done"]
        assert lock_is_free(db_path)
    with Store(db_path) as third:
        third.append(third.conversation(NB), [user("a third kernel")])
        assert texts(third) == ["after the other kernel is done", "a third kernel"]


BATCH = [user("q"), {"role": "assistant", "content": "a"}]


def ready_store(path: Path) -> tuple[Store, Conversation]:
    store = Store(path)
    conv = store.conversation(NB)
    store.append(conv, [user("before")])
    return store, conv


def first_step_of_each_statement(path: Path) -> dict[str, int]:
    """Number SQLite's progress callbacks (one per VM step) while ``append(BATCH)`` runs, and
    return, per statement, the number of the first step taken inside it."""
    store, conv = ready_store(path)
    steps: list[str | None] = []
    store._conn.db.set_trace_callback(steps.append)  # a statement starts
    store._conn.db.set_progress_handler(lambda: steps.append(None), 1)  # it takes a step
    store.append(conv, BATCH)
    store.close()
    first: dict[str, int] = {}
    count, statement = 0, ""
    for step in steps:
        if step is None:
            count += 1
            first.setdefault(statement, count)
        else:
            statement = " ".join(step.split()[:2])
    return first


@pytest.mark.parametrize(
    "statement",
    [
        "BEGIN IMMEDIATE",
        "SELECT id",
        "INSERT INTO",
        "UPDATE messages",
        "UPDATE conversations",
        "COMMIT",
    ],
)
def test_interrupt_at_any_point_of_a_write_keeps_it_whole_or_absent(
    db_path: Path, tmp_path: Path, statement: str
) -> None:
    step = first_step_of_each_statement(tmp_path / "probe" / "conversations.db")[statement]
    store, conv = ready_store(db_path)
    with store:
        # Stop pressed while SQLite runs that statement: the interrupt is only flagged there,
        # in C (no Python runs between the steps), and Python raises it once the call returns.
        stop = itertools.chain(
            itertools.repeat(None, step - 1), map(_thread.interrupt_main, [signal.SIGINT])
        )
        store._conn.db.set_progress_handler(functools.partial(next, stop, None), 1)
        with pytest.raises(KeyboardInterrupt):
            store.append(conv, BATCH)
        store._conn.db.set_progress_handler(None, 1)
        assert not store._conn.db.in_transaction
        assert lock_is_free(db_path)
        # Stopped by the time COMMIT returns, the write is whole; before that, absent.
        expected = ["before", "q", "a"] if statement == "COMMIT" else ["before"]
        assert texts(store) == expected
        store.append(conv, [user("after")])
        assert texts(store) == [*expected, "after"]


def test_error_inside_a_transaction_rolls_back_and_releases_the_lock(db_path: Path) -> None:
    with Store(db_path) as store:
        conv = store.conversation(NB)
        store.append(conv, [user("q1")])
        store.fork(conv, "copy")
        with pytest.raises(ValueError, match="already exists"):
            store.fork(conv, "copy")  # raised after the transaction began
        assert not store._conn.db.in_transaction and lock_is_free(db_path)
        store.append(conv, [user("q2")])
        assert texts(store) == ["q1", "q2"] and texts(store, "copy") == ["q1"]


def test_a_transaction_left_open_is_rolled_back_before_the_next_operation(db_path: Path) -> None:
    # What a second Stop landing inside the rollback itself would leave behind.
    with Store(db_path) as store:
        conv = store.conversation(NB)
        store._conn.db.execute("BEGIN IMMEDIATE")
        store._conn.db.execute("DELETE FROM messages")
        store.append(conv, [user("next cell")])
        assert texts(store) == ["next cell"] and lock_is_free(db_path)


def test_lock_held_past_the_deadline_says_who_and_what_to_do(
    db_path: Path, holder: subprocess.Popen
) -> None:
    with Store(db_path, busy_timeout=0.3) as store:
        conv = store.conversation(NB)
        with pytest.raises(StoreError) as caught:
            store.append(conv, [user("q")])
        message = str(caught.value)
        assert "another kernel" in message and "Run the cell again" in message
        assert "\n" not in message and not isinstance(caught.value, KeyboardInterrupt)
        release(holder)
        store.append(conv, [user("q")])
        assert texts(store) == ["q"]


# -- a full disk ---------------------------------------------------------------------------


def test_full_disk_rolls_back_explains_and_recovers(db_path: Path) -> None:
    with Store(db_path) as store, Store(db_path) as other_kernel:
        conv = store.conversation(NB)
        store.append(conv, [user("kept")])
        pages = store._conn.db.execute("PRAGMA page_count").fetchone()[0]
        # SQLite reports SQLITE_FULL once the file would grow past this, as on a full disk.
        store._conn.db.execute(f"PRAGMA max_page_count={pages}")
        with pytest.raises(StoreError) as caught:
            store.append(conv, [user("x" * 200_000), {"role": "assistant", "content": "y"}])
        message = str(caught.value)
        assert "disk is full" in message and "Free some disk space" in message
        assert "nothing was half-written" in message and "\n" not in message
        assert texts(store) == ["kept"] and not store._conn.db.in_transaction
        assert lock_is_free(db_path)
        other_kernel.append(other_kernel.conversation(NB), [user("other kernel")])
        store._conn.db.execute("PRAGMA max_page_count=1073741823")  # space freed
        store.append(conv, [user("x" * 200_000)])
        assert texts(store) == ["kept", "other kernel", "x" * 200_000]


# -- symbolic links ------------------------------------------------------------------------


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """Somebody else's file that a planted link points at."""
    path = tmp_path / "victim" / "notes.txt"
    path.parent.mkdir()
    path.write_bytes(b"precious, not a database\n")
    path.chmod(0o644)
    return path


def untouched(victim: Path) -> bool:
    return (
        victim.read_bytes() == b"precious, not a database\n"
        and stat.S_IMODE(victim.stat().st_mode) == 0o644
        and sorted(p.name for p in victim.parent.iterdir()) == ["notes.txt"]
    )


@POSIX
@pytest.mark.parametrize(
    "name", ["conversations.db", "conversations.db-wal", "conversations.db-shm"]
)
def test_link_planted_at_the_store_is_refused(db_path: Path, victim: Path, name: str) -> None:
    if name != "conversations.db":
        Store(db_path).close()  # a healthy store, a link planted next to it
    db_path.parent.mkdir(exist_ok=True)
    link = db_path.parent / name
    link.symlink_to(victim)
    with pytest.raises(StoreError) as caught:
        Store(db_path)
    message = str(caught.value)
    assert f"refuses to use {link}" in message and "symbolic link" in message
    assert f"to {victim}" in message and "CLARIFAI_MAGIC_HOME" in message
    assert untouched(victim) and link.is_symlink()
    link.unlink()  # what the message says to do
    with Store(db_path) as store:
        store.append(store.conversation(NB), [user("mine")])
        assert texts(store) == ["mine"]
    assert untouched(victim)


@POSIX
def test_dangling_link_is_not_followed_to_create_a_file(db_path: Path, tmp_path: Path) -> None:
    db_path.parent.mkdir()
    target = tmp_path / "elsewhere.db"
    db_path.symlink_to(target)
    with pytest.raises(StoreError, match="symbolic link"):
        Store(db_path)
    assert not target.exists()


@POSIX
def test_link_planted_at_the_lock_is_refused(db_path: Path, victim: Path) -> None:
    db_path.parent.mkdir()
    db_path.write_bytes(b"garbage, so the store takes its recovery lock " * 100)
    lock = db_path.with_name("conversations.db.lock")
    lock.symlink_to(victim)
    with pytest.raises(StoreError, match=f"refuses to use {lock}"):
        Store(db_path)
    assert untouched(victim)
    assert db_path.read_bytes().startswith(b"garbage")  # not moved on behalf of the link
    lock.unlink()
    with Store(db_path) as store:
        assert store.notice is not None and "moved to" in store.notice
    assert untouched(victim)


# -- read-only databases -------------------------------------------------------------------


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@POSIX
def test_read_only_database_is_shown_not_moved(db_path: Path) -> None:
    with Store(db_path) as store:
        conv = store.conversation(NB)
        store.set_system_prompt(conv, "Be brief.")
        store.append(conv, [user("q"), {"role": "assistant", "content": "a"}], model="m")
    db_path.chmod(0o400)
    before = digest(db_path)
    with Store(db_path) as store:
        notice = store.pop_notice()
        assert notice is not None and store.pop_notice() is None
        assert "read-only" in notice and f"chmod u+w {db_path}" in notice
        assert "shown but nothing new is saved" in notice
        conv = store.conversation(NB)
        assert conv is not None and conv.system_prompt == "Be brief."
        assert texts(store) == ["q", "a"]
        assert [c.name for c in store.chats(NB)] == ["main"]
        for write in (
            lambda: store.append(conv, [user("new")]),
            lambda: store.reset(conv),
            lambda: store.conversation(NB, "new chat"),
        ):
            with pytest.raises(StoreError) as caught:
                write()
            assert "read-only" in str(caught.value) and f"chmod u+w {db_path}" in str(caught.value)
        assert texts(store) == ["q", "a"] and not store._conn.db.in_transaction
        assert digest(db_path) == before
        assert list(db_path.parent.glob("*.corrupt-*")) == []
        # Made writable while the kernel runs: the next write just works.
        db_path.chmod(0o600)
        store.append(conv, [user("new")])
        assert texts(store) == ["q", "a", "new"]
    with Store(db_path) as store:
        assert store.notice is None and texts(store) == ["q", "a", "new"]


@POSIX
def test_read_only_file_that_is_not_a_database_is_still_moved_aside(db_path: Path) -> None:
    db_path.parent.mkdir()
    db_path.write_bytes(b"not a database " * 100)
    db_path.chmod(0o400)
    with Store(db_path) as store:
        assert store.notice is not None and "moved to" in store.notice
        store.append(store.conversation(NB), [user("fresh")])
    assert [p.read_bytes()[:15] for p in db_path.parent.glob("*.corrupt-*")] == [b"not a database "]


UNPRIVILEGED = textwrap.dedent(
    """
    import sys
    from clarifai_magic.store import Store, StoreError

    store = Store(sys.argv[1])
    conv = store.conversation("nb", create=False)
    print([m.message["content"] for m in store.messages(conv)])
    print(store.notice)
    try:
        store.append(conv, [{"role": "user", "content": "new"}])
    except StoreError as error:
        print(error)
    """
)


@POSIX
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to drop")
@pytest.mark.parametrize("what", ["file", "directory"])
def test_read_only_for_an_unprivileged_user(what: str) -> None:
    """The OS refuses the write (not only the mode bits): as an ordinary user, not root."""
    import pwd

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no unprivileged user")
    # Not under pytest's temporary directory, which only root may enter.
    home = Path(tempfile.mkdtemp(prefix="clarifai-magic-ro-"))
    try:
        db_path = home / "conversations.db"
        with Store(db_path) as store:
            store.append(store.conversation("nb"), [user("old")])
        for path in (home, *home.iterdir()):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        (home if what == "directory" else db_path).chmod(0o500 if what == "directory" else 0o400)

        def drop() -> None:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)

        def run(python: str, code: str) -> subprocess.CompletedProcess:
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            return subprocess.run(
                [python, "-c", code, str(db_path)],
                capture_output=True,
                text=True,
                preexec_fn=drop,
                env=env,
                cwd="/",
                timeout=60,
            )

        # This interpreter may live where the unprivileged user cannot reach; the store needs
        # only the standard library, so any Python 3.10+ that user can run will do.
        probe = "import sys, clarifai_magic.store; assert sys.version_info >= (3, 10)"
        for python in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
            with suppress(OSError):
                if python and run(python, probe).returncode == 0:
                    break
        else:
            pytest.skip("no Python the unprivileged user can run here")
        result = run(python, UNPRIVILEGED)
        assert result.returncode == 0, result.stderr
        shown, notice, error = result.stdout.splitlines()
        assert shown == "['old']"
        fix = f"chmod u+w {home if what == 'directory' else db_path}"
        assert "read-only" in notice and fix in notice
        assert "read-only" in error and fix in error
        assert not list(home.glob("*.corrupt-*"))
    finally:
        home.chmod(0o700)
        shutil.rmtree(home)


# -- in a real kernel ------------------------------------------------------------------------


@POSIX
def test_stop_while_another_kernel_holds_the_store(
    kernel: Kernel, server: OfflineServer, kernel_env: dict[str, str]
) -> None:
    server.enqueue(text("First answer."))
    assert kernel.run("%load_ext clarifai_magic").error is None
    assert kernel.run("%%clarifai\nFirst question.").reply["content"]["status"] == "ok"
    db_path = Path(kernel_env["CLARIFAI_MAGIC_HOME"]) / "conversations.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        msg_id = kernel.start("%%clarifai\nSecond question.")
        kernel.wait_for(msg_id, lambda m: m["msg_type"] == "execute_input")
        # Nothing marks the moment the cell starts waiting for the lock; it is milliseconds
        # after the cell starts, and the wait lasts 10 s.
        time.sleep(1.5)
        kernel.km.interrupt_kernel()
        run = kernel.collect(msg_id, timeout=30)
        assert holder.poll() is None  # the lock was still held: the interrupt ended the wait
    finally:
        release(holder)
    # The cell fails with one paragraph, not a KeyboardInterrupt traceback.
    assert run.reply["content"]["status"] == "error"
    assert run.error is not None
    (line,) = run.error["traceback"]
    assert line.startswith("Interrupted") and "\n" not in line
    assert "KeyboardInterrupt" not in str(run.messages) and "Traceback" not in str(run.messages)
    assert len(server.chat_requests) == 1  # the second question never went out

    # The lock is free, so this kernel and others carry on.
    server.enqueue(text("Third answer."))
    run = kernel.run("%%clarifai\nThird question.")
    assert run.reply["content"]["status"] == "ok", run.error
    assert "Third answer." in run.last_markdown
    sent = [m["content"] for m in server.chat_requests[-1].json["messages"]]
    assert sent == ["First question.", "First answer.", "Third question."]
    run = kernel.run("%clarifai reset")
    assert run.reply["content"]["status"] == "ok" and run.error is None, run.error
    with Store(db_path) as third_kernel:
        conv = third_kernel.conversation("another.ipynb")
        third_kernel.append(conv, [user("a third kernel writes")])
        assert [m.message["content"] for m in third_kernel.messages(conv)] == [
            "a third kernel writes"
        ]
        notebooks = {n.notebook_key: n.message_count for n in third_kernel.notebooks()}
        assert notebooks["another.ipynb"] == 1 and sorted(notebooks.values()) == [0, 1]
