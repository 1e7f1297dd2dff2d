"""Conversations kept in SQLite, per notebook, safe across kernel restarts, crashes and kernels.

One database file per user (see :func:`default_path`), in WAL mode, mode 0600 in a 0700
directory, its schema built by numbered migrations recorded in ``_migrations``. Only chat
messages, system prompts, model names and token counts are stored: never headers or credentials.

A user message is committed before its request goes out; its answer joins that message's
*exchange* (partial if interrupted or failed), and messages are ordered by exchange, so two kernels
answering in one conversation never interleave. Every transaction rolls back on any exception,
an interrupt included, so the write lock is never left held; another kernel's lock is waited for
in short slices, so Stop ends the wait at once (:class:`StoreInterrupted`). Failures raise
:class:`StoreError`, one paragraph saying what to do, and the store stays usable.

Symbolic links at the file, its lock or SQLite's ``-wal``/``-shm``/``-journal`` are refused. A
healthy database that cannot be written opens read-only; a corrupt one is renamed
``<name>.corrupt-<timestamp>`` and a fresh one started, one kernel at a time (an OS lock on
``<name>.lock``). :attr:`Store.notice` says either, once.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import stat
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
# SQLite waits for a lock inside C, where Python cannot deliver an interrupt: it waits this long
# at most per try, and Python retries until BUSY_TIMEOUT_S, so Stop works within ~0.1 s.
_BUSY_SLICE_S = 0.05
_RETRY_PAUSE_S = 0.02
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
# SQLite primary result codes.
_BUSY, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 8, 10, 11, 13, 14, 26
# Files SQLite opens next to the database; it follows links there as at the database itself.
_SIDE_FILES = ("-wal", "-shm", "-journal")
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # POSIX; elsewhere the lstat check stands alone
_ELSEWHERE = " set CLARIFAI_MAGIC_HOME to another directory (on another disk if need be)"

_T = TypeVar("_T")
# (device, inode): which file a path names, to tell whether another kernel replaced it.
_FileId = tuple[int, int]


class StoreError(Exception):
    """The store could not do what was asked (busy, disk full, ...); the message says why."""


class StoreInterrupted(KeyboardInterrupt):
    """An interrupt (the kernel's Stop) while the store waited or wrote: still a
    ``KeyboardInterrupt``, never caught as an error; the message says the store is fine."""


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
        self.notice: str | None = None  # for the user, once: see pop_notice
        self.readonly = False  # opened read-only: reads work, writes raise StoreError
        self._why_readonly: tuple[str, str] = ("", "")  # (reason, the command that fixes it)
        self._lock = threading.Lock()
        self._file_id: _FileId | None = None  # the file self._db has open
        self._waited = False  # the current operation has waited for another kernel's lock
        try:
            self._db, self.notice = self._open()
        except KeyboardInterrupt:
            raise StoreInterrupted(self._interrupted_message()) from None

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
        return self._delete(conv, "", {})

    def undo(self, conv: Conversation) -> int:
        """Drop the last exchange: the last user message and everything after it."""
        last = (
            "(exchange, id) >= (SELECT exchange, id FROM messages WHERE conversation_id=:cid"
            " AND role='user' ORDER BY exchange DESC, id DESC LIMIT 1)"
        )
        return self._delete(conv, last, {})

    def drop_exchange(self, conv: Conversation, exchange: int) -> int:
        """Delete one exchange (an id :meth:`append` returned); returns how many messages went.

        For a question whose request failed before any answer came, so that the next request
        does not send it twice. Other exchanges, even ones stored after it, are untouched.
        """
        return self._delete(conv, "exchange=:exchange", {"exchange": exchange})

    def _delete(self, conv: Conversation, where: str, params: Mapping[str, Any]) -> int:
        """Delete the conversation's messages matching ``where`` (all if empty); how many went."""

        def op(db: sqlite3.Connection) -> int:
            with _write(db):
                cid = _conversation_id(db, conv, create=False)
                if cid is None:
                    return 0
                sql = "DELETE FROM messages WHERE conversation_id=:cid"
                n = db.execute(f"{sql} AND {where}" if where else sql, {**params, "cid": cid})
                if n.rowcount:
                    db.execute("UPDATE conversations SET updated=? WHERE id=?", (time.time(), cid))
                return n.rowcount

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
        return self._select(
            ChatSummary,
            "SELECT c.name, (SELECT COUNT(*) FROM messages m WHERE m.conversation_id=c.id),"
            " c.updated, c.system_prompt, c.model FROM conversations c"
            " WHERE c.notebook_key=? ORDER BY c.updated DESC, c.name",
            (notebook_key,),
        )

    def usage(self, notebook_key: str) -> list[UsageRow]:
        """Tokens spent per conversation and model (including messages since reset or undone)."""
        return self._select(
            UsageRow,
            "SELECT c.name, u.model, COALESCE(SUM(u.prompt_tokens), 0),"
            " COALESCE(SUM(u.completion_tokens), 0), COUNT(*)"
            " FROM usage u JOIN conversations c ON c.id = u.conversation_id"
            " WHERE c.notebook_key=? GROUP BY c.id, u.model ORDER BY c.name, u.model",
            (notebook_key,),
        )

    def notebooks(self) -> list[NotebookSummary]:
        """Every notebook with conversations, most recently used first (to find a renamed one)."""
        return self._select(
            NotebookSummary,
            "SELECT c.notebook_key, COUNT(*), SUM((SELECT COUNT(*) FROM messages m"
            " WHERE m.conversation_id=c.id)), MAX(c.updated) FROM conversations c"
            " GROUP BY c.notebook_key ORDER BY MAX(c.updated) DESC",
            (),
        )

    def _select(self, row_type: Callable[..., _T], sql: str, params: tuple[Any, ...]) -> list[_T]:
        return self._run(lambda db: [row_type(*row) for row in db.execute(sql, params)])

    def pop_notice(self) -> str | None:
        """The pending notice for the user (a database moved aside, or read-only), once."""
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

    # -- running operations ------------------------------------------------------------------

    def _run(self, op: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``op`` under the lock: retried while another kernel holds the write lock, on a
        fresh database if this one turns out corrupt; any failure leaves no transaction open."""
        try:
            with self._lock:
                self._waited = False
                return self._attempt(op)
        except KeyboardInterrupt as interrupt:
            if isinstance(interrupt, StoreInterrupted):
                raise
            raise StoreInterrupted(self._interrupted_message()) from None

    def _attempt(self, op: Callable[[sqlite3.Connection], _T]) -> _T:
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        recovered = reopened = False
        while True:
            db = self._db
            try:
                _settle(db)  # in case an earlier interrupt beat even the rollback
                return op(db)
            except sqlite3.DatabaseError as error:
                code = _primary_code(error)
                if code == _BUSY and time.monotonic() < deadline:
                    self._waited = True
                    time.sleep(_RETRY_PAUSE_S)
                    continue
                if code == _READONLY and self.readonly and not reopened:
                    reopened = True  # made writable since? (the notice says how)
                    if self._reopen_writable():
                        continue
                if _is_corrupt(error) and not recovered and not self.readonly:
                    recovered = True
                    # The old connection stays until a new one exists: if recovery fails (a
                    # link planted at the lock), the next operation finds the damage again.
                    fresh, self.notice = self._recover(self._file_id, error)
                    self._db.close()
                    self._db = fresh
                    continue
                raise self._store_error(error) from error
            finally:
                _settle(db)

    def _reopen_writable(self) -> bool:
        try:
            db, _ = self._open_file()
        except (sqlite3.DatabaseError, OSError):
            return False
        if self.readonly:
            db.close()
            return False
        self._db.close()
        self._db = db
        return True

    def _store_error(self, error: sqlite3.DatabaseError) -> StoreError:
        code, elsewhere = _primary_code(error), f"{_ELSEWHERE} and restart the kernel."
        if code == _BUSY:
            what = (
                f"is busy: another kernel has held its write lock for over {BUSY_TIMEOUT_S:.0f}"
                " s, so this was not saved. Run the cell again in a moment; if that keeps"
                " happening, look for a notebook whose cell is still running or stuck, and"
                " interrupt or restart its kernel."
            )
        elif code == _FULL:
            what = (
                "could not be updated because the disk is full, so this was not saved (nothing"
                f" was half-written). Free some disk space and run the cell again, or{elsewhere}"
            )
        elif code == _READONLY:
            reason, fix = self._why_readonly if self.readonly else _file_fix(self.path)
            what = (
                f"is read-only ({reason}), so this could not be saved. Make it writable (`{fix}`)"
                f" and run the cell again (--no-history asks without saving), or{elsewhere}"
            )
        elif code == _IOERR:
            what = (
                f"could not be updated because the disk reported an error ({error}), so this was"
                f" not saved. Check the disk and run the cell again, or{elsewhere}"
            )
        else:
            what = (
                f"could not be used: {error}. Run the cell again; if it keeps failing,{elsewhere}"
            )
        return StoreError(f"The conversation store {self.path} {what}")

    def _interrupted_message(self) -> str:
        if self._waited:
            return (
                f"Interrupted while waiting for the conversation store {self.path}, which"
                " another kernel is writing to: nothing was saved by this step, and the store"
                " is fine. Run the cell again when the other kernel is done."
            )
        return (
            f"Interrupted while using the conversation store {self.path}: a change is saved"
            " whole or not at all, so the store is fine. Run the cell again."
        )

    # -- opening, recovery -----------------------------------------------------------------

    def _open(self) -> tuple[sqlite3.Connection, str | None]:
        """Open the database file (no lock needed while all is well), else recover."""
        seen = _identity(self.path)
        try:
            return self._open_file()
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
                        db, notice = self._open_file()
                        return db, notice or (self._replaced_notice() if replaced else None)
                    except (sqlite3.DatabaseError, OSError) as error:
                        cause = error
                if not (_is_unusable(cause) and self.path.is_file()):
                    raise cause
                moved = _move_aside(self.path)
                db, _ = self._open_file()
        except (sqlite3.DatabaseError, OSError) as error:
            db = _connect(":memory:")
            _migrate(db)
            self.readonly = False
            return db, (
                f"The conversation store {self.path} could not be opened ({error}), so this"
                " session's conversations are kept in memory only and will be lost when the"
                " kernel stops. Check that you can read and write it and its directory, or set"
                " CLARIFAI_MAGIC_HOME to another directory, and restart the kernel."
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

    def _open_file(self) -> tuple[sqlite3.Connection, str | None]:
        """Open the file read-write, else read-only with a notice if it is healthy but can't be
        written; never through a symbolic link."""
        path = self.path
        _make_private_dir(path.parent)
        _refuse_links(path)
        try:
            # Create it ourselves so it is never readable by others, even for a moment.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW, 0o600)
        except OSError as error:
            if error.errno == errno.ELOOP:  # a link planted since the check
                raise _link_error(path) from None
            if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and os.access(path, os.R_OK):
                return self._open_readonly(*_file_fix(path))
            raise
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and not st.st_mode & 0o222:
                # Made read-only on purpose: honoured even where the OS would allow (root).
                return self._open_readonly(*_file_fix(path))
            if hasattr(os, "fchmod") and _owned(st) and stat.S_IMODE(st.st_mode) != 0o600:
                os.fchmod(fd, 0o600)  # through our descriptor: never through a link
        finally:
            os.close(fd)
        _writable_side_files(path)
        try:
            db = _connect_rw(path)
        except sqlite3.DatabaseError as error:
            if _primary_code(error) != _READONLY:
                raise
            return self._open_readonly(
                f"its directory {path.parent} is read-only", f"chmod u+w {path.parent}"
            )
        try:
            _refuse_links(path)  # planted between our check and SQLite's own open?
        except BaseException:
            db.close()
            raise
        self._file_id, self.readonly = (st.st_dev, st.st_ino), False
        return db, None

    def _open_readonly(self, reason: str, fix: str) -> tuple[sqlite3.Connection, str]:
        uri = self.path.absolute().as_uri() + "?mode=ro"
        try:
            db = _checked(_connect(uri, uri=True))
        except sqlite3.DatabaseError as error:
            # In a read-only directory SQLite cannot make the -shm file a WAL database needs;
            # without a -wal file nothing waits to be checkpointed, so the file is all there is.
            if _primary_code(error) not in (_READONLY, _CANTOPEN) or os.path.lexists(
                f"{self.path}-wal"
            ):
                raise
            db = _checked(_connect(uri + "&immutable=1", uri=True))
        self._file_id, self.readonly = _identity(self.path), True
        self._why_readonly = (reason, fix)
        return db, (
            f"The conversation store {self.path} is read-only ({reason}), so your conversations"
            " are shown but nothing new is saved, and asking in a conversation fails. To save"
            f" again, make it writable (`{fix}`) and run the cell again, or{_ELSEWHERE} and"
            " restart the kernel."
        )


def _identity(path: Path) -> _FileId | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _owned(st: os.stat_result) -> bool:
    return not hasattr(os, "geteuid") or st.st_uid == os.geteuid()


def _file_fix(path: Path) -> tuple[str, str]:
    return "its file mode does not allow writing", f"chmod u+w {path}"


def _link_error(path: Path) -> StoreError:
    try:
        target = f" (to {os.readlink(path)})"
    except OSError:
        target = ""
    return StoreError(
        f"The conversation store refuses to use {path}: it is a symbolic link{target}, and"
        " following it could write your conversations into a file someone else chose. Remove"
        f" the link (`rm {path}`) if you did not make it, or set CLARIFAI_MAGIC_HOME to a"
        " directory of your own, and run the cell again."
    )


def _refuse_links(path: Path, suffixes: tuple[str, ...] = _SIDE_FILES) -> None:
    """Raise StoreError if the database or a file SQLite keeps next to it is a symbolic link."""
    for name in (str(path), *(f"{path}{suffix}" for suffix in suffixes)):
        with suppress(FileNotFoundError):
            if stat.S_ISLNK(os.lstat(name).st_mode):
                raise _link_error(Path(name))


def _writable_side_files(path: Path) -> None:
    """Give our -wal/-shm files back their write bit: SQLite creates them with the database's
    mode, so a read-only session leaves them read-only, and writes would fail once it is fixed."""
    if not hasattr(os, "fchmod"):
        return
    for suffix in ("-wal", "-shm"):
        try:
            fd = os.open(f"{path}{suffix}", os.O_RDONLY | _O_NOFOLLOW)
        except OSError:
            continue  # missing (SQLite makes it), or a link (refused before this)
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and _owned(st) and not st.st_mode & stat.S_IWUSR:
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an OS lock on ``lock_path`` (made if missing); the OS drops it if the process dies."""
    _make_private_dir(lock_path.parent)
    _refuse_links(lock_path, ())
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW, 0o600)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise _link_error(lock_path) from None
        raise
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


def _connect(path: str | os.PathLike[str], *, uri: bool = False) -> sqlite3.Connection:
    # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE in _write).
    return sqlite3.connect(
        path, timeout=_BUSY_SLICE_S, isolation_level=None, check_same_thread=False, uri=uri
    )


def _connect_rw(path: Path) -> sqlite3.Connection:
    # Kernels opening a fresh file together get "database is locked" (switching to WAL, a
    # migration): that is contention, not damage, so wait and try again.
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        db = _connect(path)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL loses nothing committed when a process dies, only on power loss.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            _migrate(db)
            return db
        except sqlite3.OperationalError as error:
            db.close()
            if _primary_code(error) != _BUSY or time.monotonic() > deadline:
                raise
            time.sleep(_RETRY_PAUSE_S)
        except BaseException:
            db.close()  # which also rolls back
            raise


def _checked(db: sqlite3.Connection) -> sqlite3.Connection:
    """``db`` if it holds the current schema (it is read-only: nothing can be migrated)."""
    try:
        done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
        missing = [m.__name__ for m in MIGRATIONS if m.__name__ not in done]
        if missing:
            raise sqlite3.OperationalError(
                f"it is read-only and needs an update ({', '.join(missing)})"
            )
    except BaseException:
        db.close()
        raise
    return db


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


def _settle(db: sqlite3.Connection) -> None:
    """Roll back a transaction left open by an error or an interrupt, wherever it landed: an
    open write transaction holds the lock every other kernel waits for."""
    interrupted: KeyboardInterrupt | None = None
    while True:
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
            break
        except KeyboardInterrupt as again:  # a second Stop: roll back first, then stop
            interrupted = again
        except sqlite3.Error:  # closed, or SQLite already rolled back (disk full, corruption)
            break
    if interrupted is not None:
        raise interrupted


@contextmanager
def _write(db: sqlite3.Connection) -> Iterator[None]:
    """A write transaction, taking the write lock up front so it cannot fail halfway on busy.

    A busy lock fails at BEGIN after a short wait (the caller retries); anything raised at any
    point, BEGIN and COMMIT included, rolls back.
    """
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
        db.execute("COMMIT")
    finally:
        _settle(db)


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
    for words, code in (
        ("malformed", _CORRUPT),
        ("not a database", _NOTADB),
        ("unable to open database", _CANTOPEN),
        ("readonly database", _READONLY),
        ("database is locked", _BUSY),
        ("disk is full", _FULL),
        ("disk i/o error", _IOERR),
    ):
        if words in text:
            return code
    return None


def _is_corrupt(error: BaseException) -> bool:
    return _primary_code(error) in (_CORRUPT, _NOTADB)


def _is_unusable(error: BaseException) -> bool:
    """An error that moving the file aside can cure: damage, or a file SQLite cannot open at
    all (not a permission, a read-only file, a busy lock or a full disk)."""
    return _primary_code(error) in (_CORRUPT, _NOTADB, _CANTOPEN)
