"""Conversations kept in SQLite, per notebook, safe across kernel restarts, crashes and kernels.

One database file per user (see :func:`default_path`), opened in WAL mode with a busy timeout,
mode 0600 in a 0700 directory, its schema built by numbered migrations recorded in a
``_migrations`` table. Only chat messages, system prompts, model names and token counts are
stored: never request headers or credentials.

Writes are atomic groups: a user message is committed before its request goes out, and the
answer (assistant messages with their tool calls and results) joins that message's *exchange*
when it completes, or marked partial when it is interrupted or fails. Messages are ordered by
exchange, so two kernels answering in one conversation at once never interleave their
exchanges. A corrupt or unreadable database is renamed ``<name>.corrupt-<timestamp>`` and a
fresh one started, by one kernel at a time (an OS lock on ``<name>.lock``); :attr:`Store.notice`
then says so, once, for the user.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

APP_DIR = "clarifai-magic"
DB_NAME = "conversations.db"
# Long enough to wait out another kernel's largest write (forking a long conversation), short
# enough that a stuck kernel shows up as an error rather than a frozen cell.
BUSY_TIMEOUT_S = 10.0
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
# SQLite primary result codes that mean the file is not a usable database.
_SQLITE_READONLY, _SQLITE_CORRUPT, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 8, 11, 14, 26

_T = TypeVar("_T")
# (device, inode): which file a path names, to tell whether another kernel replaced it.
_FileId = tuple[int, int]


class StoreError(Exception):
    """The store could not do what was asked (busy, disk full, ...); the message says why."""


@dataclass
class Conversation:
    """A named conversation of one notebook; the store looks it up by (notebook_key, name)."""

    notebook_key: str
    name: str
    system_prompt: str | None = None
    model: str | None = None  # the model of the latest answer stored


@dataclass
class StoredMessage:
    message: dict[str, Any]  # an OpenAI chat message, as given to Store.append
    partial: bool
    created: float
    model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None


@dataclass
class ChatSummary:
    name: str
    message_count: int
    last_used: float
    system_prompt: str | None
    model: str | None


@dataclass
class UsageRow:
    conversation: str
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    responses: int


@dataclass
class NotebookSummary:
    notebook_key: str
    conversation_count: int
    message_count: int
    last_used: float


def default_path(environ: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """Where the database lives: ``$CLARIFAI_MAGIC_HOME``, else a per-user data directory.

    The data directory is ``$XDG_DATA_HOME/clarifai-magic`` when that variable is set (on any
    platform: it is an explicit choice), else ``~/Library/Application Support/clarifai-magic`` on
    macOS, ``%LOCALAPPDATA%\\clarifai-magic`` on Windows, ``~/.local/share/clarifai-magic``
    elsewhere.
    """
    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if env.get("CLARIFAI_MAGIC_HOME"):
        return Path(env["CLARIFAI_MAGIC_HOME"]).expanduser() / DB_NAME
    home = Path(env.get("HOME") or env.get("USERPROFILE") or Path.home())
    if env.get("XDG_DATA_HOME") and os.path.isabs(env["XDG_DATA_HOME"]):
        base = Path(env["XDG_DATA_HOME"])
    elif platform == "darwin":
        base = home / "Library" / "Application Support"
    elif platform == "win32":
        base = Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local")
    else:
        base = home / ".local" / "share"
    return base / APP_DIR / DB_NAME


# Migrations: each runs once, in order, inside its own write transaction. Append new ones
# (m002_..., m003_...); never edit one that has shipped.
def m001_initial(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            notebook_key TEXT NOT NULL,
            name TEXT NOT NULL,
            system_prompt TEXT,
            model TEXT,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            UNIQUE (notebook_key, name))"""
    )
    # AUTOINCREMENT: ids are never reused, so an exchange id (the id of its first message)
    # outlives a reset without ever naming a newer exchange.
    db.execute(
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            exchange INTEGER NOT NULL,
            role TEXT NOT NULL,
            message TEXT NOT NULL,
            partial INTEGER NOT NULL DEFAULT 0,
            created REAL NOT NULL,
            model TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER)"""
    )
    db.execute("CREATE INDEX messages_order ON messages (conversation_id, exchange, id)")
    # Tokens spent, kept apart from messages so reset/undo keep the bill and fork doesn't
    # double it.
    db.execute(
        """CREATE TABLE usage (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            model TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            created REAL NOT NULL)"""
    )
    db.execute("CREATE INDEX usage_conversation ON usage (conversation_id)")


_INSERT_MESSAGE = (
    "INSERT INTO messages (conversation_id, exchange, role, message, partial, created, model,"
    " prompt_tokens, completion_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (m001_initial,)


class Store:
    """The conversation database. Thread-safe; several processes may share one file."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.notice: str | None  # set with the connection, by _open
        self._lock = threading.Lock()
        self._file_id: _FileId | None = None  # the file self._db has open
        self._db, self.notice = self._open()

    # -- conversations -------------------------------------------------------------------

    def conversation(
        self, notebook_key: str, name: str = "main", *, create: bool = True
    ) -> Conversation | None:
        """The conversation ``name`` of a notebook; created empty if missing, unless not asked."""
        if not name:
            raise ValueError("A conversation needs a non-empty name.")

        def op(db: sqlite3.Connection) -> Conversation | None:
            conv = Conversation(notebook_key, name)
            if create and _conversation_id(db, conv, create=False) is None:
                with _write(db):
                    _conversation_id(db, conv)  # unless another kernel just made it
            row = db.execute(
                "SELECT system_prompt, model FROM conversations WHERE notebook_key=? AND name=?",
                (notebook_key, name),
            ).fetchone()
            if row is None:
                return None
            conv.system_prompt, conv.model = row
            return conv

        return self._run(op)

    def set_system_prompt(self, conv: Conversation, prompt: str | None) -> None:
        """Give the conversation a system prompt (``None`` removes it); it is kept with it."""

        def op(db: sqlite3.Connection) -> None:
            with _write(db):
                cid = _conversation_id(db, conv)
                db.execute(
                    "UPDATE conversations SET system_prompt=?, updated=? WHERE id=?",
                    (prompt, time.time(), cid),
                )

        self._run(op)
        conv.system_prompt = prompt

    def append(
        self,
        conv: Conversation,
        messages: Sequence[Mapping[str, Any]],
        *,
        exchange: int | None = None,
        partial: bool = False,
        model: str | None = None,
        usage: tuple[int | None, int | None] | None = None,
    ) -> int:
        """Store messages in one transaction and return the id of the exchange they belong to.

        Without ``exchange`` the messages start a new exchange (a user message does); pass the
        returned id when storing its answer, so the answer follows its question even when
        another kernel wrote in between. If that exchange has since been removed (reset or
        undo), the answer is not stored. ``partial`` marks an interrupted or failed answer; a
        partial message is also a checkpoint: the next append to the same exchange replaces
        the exchange's partial messages, so an answer can be saved while it streams.
        ``usage`` is (prompt_tokens, completion_tokens) for the request, recorded on the last
        assistant message and in the conversation's token account.
        """
        if not messages:
            raise ValueError("append() needs at least one message.")
        prompt_tokens, completion_tokens = usage or (None, None)
        roles = [message.get("role") for message in messages]
        last_answer = max((i for i, role in enumerate(roles) if role == "assistant"), default=-1)
        rows = []
        for i, (role, message) in enumerate(zip(roles, messages, strict=True)):
            if role not in _ROLES:
                raise ValueError(f"Cannot store a chat message with role {role!r}.")
            try:
                text = json.dumps(message, ensure_ascii=False)
            except (TypeError, ValueError) as error:
                raise ValueError(f"Cannot store a {role} message as JSON: {error}") from error
            tokens = (prompt_tokens, completion_tokens) if i == last_answer else (None, None)
            rows.append((role, text, *tokens))

        def op(db: sqlite3.Connection) -> int:
            with _write(db):
                cid = _conversation_id(db, conv)
                now = time.time()
                if exchange is None or _exchange_alive(db, cid, exchange):
                    ex = _insert(db, cid, exchange, rows, partial, now, model)
                else:
                    ex = exchange  # reset or undone meanwhile: the answer goes, the bill stays
                if prompt_tokens is not None or completion_tokens is not None:
                    db.execute(
                        "INSERT INTO usage (conversation_id, model, prompt_tokens,"
                        " completion_tokens, created) VALUES (?, ?, ?, ?, ?)",
                        (cid, model, prompt_tokens, completion_tokens, now),
                    )
                db.execute(
                    "UPDATE conversations SET updated=?, model=COALESCE(?, model) WHERE id=?",
                    (now, model, cid),
                )
                return ex

        ex = self._run(op)
        if model is not None:
            conv.model = model
        return ex

    def messages(self, conv: Conversation) -> list[StoredMessage]:
        """The conversation's messages, in order (each exchange's messages together)."""

        def op(db: sqlite3.Connection) -> list[StoredMessage]:
            cid = _conversation_id(db, conv, create=False)
            if cid is None:
                return []
            rows = db.execute(
                "SELECT message, partial, created, model, prompt_tokens, completion_tokens"
                " FROM messages WHERE conversation_id=? ORDER BY exchange, id",
                (cid,),
            ).fetchall()
            loads = json.loads
            return [StoredMessage(loads(r[0]), bool(r[1]), *r[2:]) for r in rows]

        return self._run(op)

    def reset(self, conv: Conversation) -> int:
        """Forget the conversation's messages (its system prompt stays); returns how many."""

        def op(db: sqlite3.Connection) -> int:
            with _write(db):
                cid = _conversation_id(db, conv, create=False)
                if cid is None:
                    return 0
                n = db.execute("DELETE FROM messages WHERE conversation_id=?", (cid,)).rowcount
                db.execute("UPDATE conversations SET updated=? WHERE id=?", (time.time(), cid))
                return n

        return self._run(op)

    def undo(self, conv: Conversation) -> int:
        """Drop the last exchange: the last user message and everything after it."""

        def op(db: sqlite3.Connection) -> int:
            with _write(db):
                cid = _conversation_id(db, conv, create=False)
                if cid is None:
                    return 0
                last = db.execute(
                    "SELECT exchange, id FROM messages WHERE conversation_id=? AND role='user'"
                    " ORDER BY exchange DESC, id DESC LIMIT 1",
                    (cid,),
                ).fetchone()
                if last is None:
                    return 0
                n = db.execute(
                    "DELETE FROM messages WHERE conversation_id=? AND (exchange, id) >= (?, ?)",
                    (cid, *last),
                ).rowcount
                db.execute("UPDATE conversations SET updated=? WHERE id=?", (time.time(), cid))
                return n

        return self._run(op)

    def drop_exchange(self, conv: Conversation, exchange: int) -> int:
        """Delete one exchange (an id :meth:`append` returned); returns how many messages went.

        For a question whose request failed before any answer came, so that the next request
        does not send it twice. Other exchanges, even ones stored after it, are untouched.
        """

        def op(db: sqlite3.Connection) -> int:
            with _write(db):
                cid = _conversation_id(db, conv, create=False)
                if cid is None:
                    return 0
                n = db.execute(
                    "DELETE FROM messages WHERE conversation_id=? AND exchange=?", (cid, exchange)
                ).rowcount
                if n:
                    db.execute("UPDATE conversations SET updated=? WHERE id=?", (time.time(), cid))
                return n

        return self._run(op)

    def fork(
        self, conv: Conversation, new_name: str, *, notebook_key: str | None = None
    ) -> Conversation:
        """Copy a conversation (messages, system prompt) to ``new_name``.

        The copy goes to the same notebook unless ``notebook_key`` names another one, which is
        how a renamed notebook gets its old conversations back. The target must not already
        hold messages. Token usage stays with the original.
        """
        if not new_name:
            raise ValueError("A conversation needs a non-empty name.")
        target_key = conv.notebook_key if notebook_key is None else notebook_key

        def op(db: sqlite3.Connection) -> Conversation:
            with _write(db):
                src = _conversation_id(db, conv, create=False)
                target = Conversation(target_key, new_name, conv.system_prompt, conv.model)
                if src is not None:
                    target.system_prompt, target.model = db.execute(
                        "SELECT system_prompt, model FROM conversations WHERE id=?", (src,)
                    ).fetchone()
                dst = _conversation_id(db, target)
                if (
                    src == dst
                    or db.execute(
                        "SELECT 1 FROM messages WHERE conversation_id=? LIMIT 1", (dst,)
                    ).fetchone()
                ):
                    raise ValueError(
                        f"A conversation named {new_name!r} already exists: pick another name,"
                        " or reset that one first."
                    )
                db.execute(
                    "UPDATE conversations SET system_prompt=?, model=?, updated=? WHERE id=?",
                    (target.system_prompt, target.model, time.time(), dst),
                )
                if src is not None:
                    _copy_messages(db, src, dst)
                return target

        return self._run(op)

    def chats(self, notebook_key: str) -> list[ChatSummary]:
        """The notebook's conversations, most recently used first."""

        def op(db: sqlite3.Connection) -> list[ChatSummary]:
            rows = db.execute(
                "SELECT c.name, (SELECT COUNT(*) FROM messages m WHERE m.conversation_id=c.id),"
                " c.updated, c.system_prompt, c.model FROM conversations c"
                " WHERE c.notebook_key=? ORDER BY c.updated DESC, c.name",
                (notebook_key,),
            ).fetchall()
            return [ChatSummary(*row) for row in rows]

        return self._run(op)

    def usage(self, notebook_key: str) -> list[UsageRow]:
        """Tokens spent per conversation and model (including messages since reset or undone)."""

        def op(db: sqlite3.Connection) -> list[UsageRow]:
            rows = db.execute(
                "SELECT c.name, u.model, COALESCE(SUM(u.prompt_tokens), 0),"
                " COALESCE(SUM(u.completion_tokens), 0), COUNT(*)"
                " FROM usage u JOIN conversations c ON c.id = u.conversation_id"
                " WHERE c.notebook_key=? GROUP BY c.id, u.model ORDER BY c.name, u.model",
                (notebook_key,),
            ).fetchall()
            return [UsageRow(*row) for row in rows]

        return self._run(op)

    def notebooks(self) -> list[NotebookSummary]:
        """Every notebook with conversations, most recently used first (to find a renamed one)."""

        def op(db: sqlite3.Connection) -> list[NotebookSummary]:
            rows = db.execute(
                "SELECT c.notebook_key, COUNT(*), SUM((SELECT COUNT(*) FROM messages m"
                " WHERE m.conversation_id=c.id)), MAX(c.updated) FROM conversations c"
                " GROUP BY c.notebook_key ORDER BY MAX(c.updated) DESC",
            ).fetchall()
            return [NotebookSummary(*row) for row in rows]

        return self._run(op)

    def pop_notice(self) -> str | None:
        """The pending notice for the user (a database moved aside), cleared once taken."""
        with self._lock:
            notice, self.notice = self.notice, None
            return notice

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, op: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``op`` under the lock; on corruption start a fresh database and run it again."""
        with self._lock:
            try:
                return op(self._db)
            except sqlite3.DatabaseError as error:
                if not _is_corrupt(error):
                    raise self._store_error(error) from error
                self._db.close()
                self._db, self.notice = self._recover(self._file_id, error)
            try:
                return op(self._db)
            except sqlite3.DatabaseError as error:
                raise self._store_error(error) from error

    def _store_error(self, error: sqlite3.DatabaseError) -> StoreError:
        return StoreError(
            f"The conversation store {self.path} could not be updated: {error}. If another"
            " kernel is busy with it, try again in a moment; if the disk is full or the file is"
            " read-only, fix that, or set CLARIFAI_MAGIC_HOME to another directory and restart"
            " the kernel."
        )

    # -- opening, recovery -----------------------------------------------------------------

    def _open(self) -> tuple[sqlite3.Connection, str | None]:
        """Open the database file (no lock needed while all is well), else recover."""
        seen = _identity(self.path)
        try:
            return self._open_file(), None
        except (sqlite3.DatabaseError, OSError) as error:
            return self._recover(seen, error)

    def _recover(
        self, failed: _FileId | None, cause: Exception
    ) -> tuple[sqlite3.Connection, str | None]:
        """A usable database, and a notice for the user, after the file ``failed`` gave ``cause``.

        Kernels that meet a broken file together take turns under an OS lock on a sidecar
        file: the first moves the file aside and starts a fresh one, the others find it
        replaced and open that. If no file can be used, conversations are kept in memory.
        """
        try:
            with _exclusive(self.path.with_name(f"{self.path.name}.lock")):
                current = _identity(self.path)
                replaced = failed is not None and current != failed
                # The same file, which SQLite called corrupt, would only fail again; anything
                # else (another kernel replaced it, a permission just fixed...) is worth a retry.
                if replaced or not _is_corrupt(cause):
                    try:
                        return self._open_file(), self._replaced_notice() if replaced else None
                    except (sqlite3.DatabaseError, OSError) as error:
                        cause = error
                if not (_is_unusable(cause) and self.path.is_file()):
                    raise cause
                moved = _move_aside(self.path)
                db = self._open_file()
        except (sqlite3.DatabaseError, OSError) as error:
            db = _connect(":memory:")
            _migrate(db)
            return db, (
                f"The conversation store {self.path} could not be opened ({error}), so this"
                " session's conversations are kept in memory only and will be lost when the"
                " kernel stops. Check that the directory is writable, or set CLARIFAI_MAGIC_HOME"
                " to another directory, and restart the kernel."
            )
        if moved is None:  # someone outside our lock moved or deleted it meanwhile
            return db, self._replaced_notice()
        return db, (
            f"The conversation store {self.path} could not be read ({cause}), so it was moved to"
            f" {moved} and a fresh one started: earlier conversations are not available. Keep"
            " the moved file if you want to try to recover them."
        )

    def _replaced_notice(self) -> str:
        return (
            f"The conversation store {self.path} could not be read, and another kernel has"
            f" replaced it with a fresh one (the old file was moved to {self.path.name}.corrupt-*"
            " next to it): earlier conversations are not available here."
        )

    def _open_file(self) -> sqlite3.Connection:
        _make_private_dir(self.path.parent)
        # Create the file ourselves so it is never readable by others, even for a moment.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        with suppress(OSError):  # not our file: leave its mode to its owner
            os.chmod(self.path, 0o600)
        file_id = _identity(self.path)
        # Kernels opening a fresh file together can get "database is locked" at once, without
        # the busy timeout's wait (switching to WAL, or a stale read snapshot upgrading to a
        # write): that is contention, not damage, so wait and try again.
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            db = _connect(self.path)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                # In WAL mode NORMAL loses nothing committed when a process dies, only on
                # power loss.
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA foreign_keys=ON")
                _migrate(db)
            except sqlite3.OperationalError as error:
                db.close()
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
                continue
            except BaseException:
                db.close()
                raise
            self._file_id = file_id
            return db


def _identity(path: Path) -> _FileId | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an OS lock on ``lock_path`` (made if missing); the OS drops it if the process dies."""
    _make_private_dir(lock_path.parent)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # retries for 10 s, then raises OSError
            try:
                yield
            finally:
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)  # held by a kernel doing a few bounded SQLite calls
            yield
    finally:
        os.close(fd)  # also releases the flock


def _move_aside(path: Path) -> Path | None:
    """Rename the database and its WAL files; None if the database was already gone."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    # A WAL left next to a fresh database would be replayed into it: move it along, first.
    for suffix in ("-wal", "-shm"):
        with suppress(FileNotFoundError):
            os.replace(f"{path}{suffix}", f"{target}{suffix}")
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return None
    return target


def _connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE in _write).
    return sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )


def _make_private_dir(path: Path) -> None:
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with suppress(FileExistsError):  # another process made it first
            directory.mkdir(mode=0o700)
            os.chmod(directory, 0o700)  # mkdir's mode is subject to the umask


def _migrate(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied REAL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    for migration in MIGRATIONS:
        if migration.__name__ in done:
            continue
        with _write(db):
            # Another process may have applied it while we waited for the write lock.
            if db.execute(
                "SELECT 1 FROM _migrations WHERE name=?", (migration.__name__,)
            ).fetchone():
                continue
            migration(db)
            db.execute(
                "INSERT INTO _migrations (name, applied) VALUES (?, ?)",
                (migration.__name__, time.time()),
            )


@contextmanager
def _write(db: sqlite3.Connection) -> Iterator[None]:
    """A write transaction, taking the write lock up front so it cannot fail halfway on busy."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        # SQLite may already have rolled back (corruption, disk full); keep the first error.
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _conversation_id(
    db: sqlite3.Connection, conv: Conversation, *, create: bool = True
) -> int | None:
    row = db.execute(
        "SELECT id FROM conversations WHERE notebook_key=? AND name=?",
        (conv.notebook_key, conv.name),
    ).fetchone()
    if row is not None or not create:
        return None if row is None else row[0]
    # New, or missing after a fresh start (corruption): create it from what the caller holds.
    now = time.time()
    return db.execute(
        "INSERT INTO conversations (notebook_key, name, system_prompt, model, created, updated)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (conv.notebook_key, conv.name, conv.system_prompt, conv.model, now, now),
    ).lastrowid


def _exchange_alive(db: sqlite3.Connection, cid: int, exchange: int) -> bool:
    row = db.execute(
        "SELECT 1 FROM messages WHERE conversation_id=? AND exchange=? LIMIT 1", (cid, exchange)
    ).fetchone()
    return row is not None


def _insert(
    db: sqlite3.Connection,
    cid: int,
    exchange: int | None,
    rows: list[tuple[Any, ...]],
    partial: bool,
    now: float,
    model: str | None,
) -> int:
    """Insert (role, json, prompt_tokens, completion_tokens) rows into an exchange, replacing
    its checkpoint; return the exchange."""
    if exchange is not None:
        db.execute(
            "DELETE FROM messages WHERE conversation_id=? AND exchange=? AND partial",
            (cid, exchange),
        )
    for role, text, *tokens in rows:
        # A new exchange is named after its first message, known once inserted.
        cur = db.execute(
            _INSERT_MESSAGE, (cid, exchange or 0, role, text, partial, now, model, *tokens)
        )
        if exchange is None:
            exchange = cur.lastrowid
            db.execute("UPDATE messages SET exchange=? WHERE id=?", (exchange, exchange))
    assert exchange is not None  # rows is never empty
    return exchange


def _copy_messages(db: sqlite3.Connection, src: int, dst: int) -> None:
    exchanges: dict[int, int] = {}
    rows = db.execute(
        "SELECT exchange, role, message, partial, created, model, prompt_tokens,"
        " completion_tokens FROM messages WHERE conversation_id=? ORDER BY exchange, id",
        (src,),
    ).fetchall()
    for exchange, *fields in rows:
        cur = db.execute(_INSERT_MESSAGE, (dst, exchanges.get(exchange, 0), *fields))
        if exchange not in exchanges:
            exchanges[exchange] = cur.lastrowid
            db.execute("UPDATE messages SET exchange=? WHERE id=?", (cur.lastrowid, cur.lastrowid))


def _primary_code(error: BaseException) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return code & 0xFF
    text = str(error).lower()  # Python 3.10: only the message tells
    if "malformed" in text:
        return _SQLITE_CORRUPT
    if "not a database" in text:
        return _SQLITE_NOTADB
    if "unable to open database" in text:
        return _SQLITE_CANTOPEN
    if "readonly database" in text:
        return _SQLITE_READONLY
    return None


def _is_corrupt(error: BaseException) -> bool:
    return _primary_code(error) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def _is_unusable(error: BaseException) -> bool:
    """An error that moving the file aside can cure (not a busy lock or a full disk)."""
    if isinstance(error, PermissionError):
        return True
    return _primary_code(error) in (
        _SQLITE_CORRUPT,
        _SQLITE_NOTADB,
        _SQLITE_CANTOPEN,
        _SQLITE_READONLY,
    )
