"""The SQLite layer under the conversation store: result codes, connections that wait for locks
in short slices, the write transaction that always rolls back, and numbered migrations.

Nothing here knows the store's tables: the schema comes in as a sequence of migrations.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path

# SQLite waits for a lock inside C, where Python cannot deliver an interrupt: it waits this long
# at most per try, and Python retries until the store's busy timeout, so Stop works within ~0.1 s.
BUSY_SLICE_S = 0.05
RETRY_PAUSE_S = 0.02

# One migration: runs once, inside its own write transaction; its function name is its record.
Migration = Callable[[sqlite3.Connection], None]


class Code(IntEnum):
    """SQLite primary result codes the store tells apart."""

    BUSY = 5
    READONLY = 8
    IOERR = 10
    CORRUPT = 11
    FULL = 13
    CANTOPEN = 14
    NOTADB = 26


# Python 3.10 has no sqlite_errorcode: only the message tells.
_CODE_BY_WORDS = (
    ("malformed", Code.CORRUPT),
    ("not a database", Code.NOTADB),
    ("unable to open database", Code.CANTOPEN),
    ("readonly database", Code.READONLY),
    ("database is locked", Code.BUSY),
    ("disk is full", Code.FULL),
    ("disk i/o error", Code.IOERR),
)


def primary_code(error: BaseException) -> int | None:
    """The SQLite primary result code of ``error``, if it has one."""
    code = getattr(error, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return code & 0xFF
    text = str(error).lower()
    return next((code for words, code in _CODE_BY_WORDS if words in text), None)


def is_corrupt(error: BaseException) -> bool:
    return primary_code(error) in (Code.CORRUPT, Code.NOTADB)


def is_unusable(error: BaseException) -> bool:
    """An error that moving the file aside can cure: damage, or a file SQLite cannot open at
    all (not a permission, a read-only file, a busy lock or a full disk)."""
    return primary_code(error) in (Code.CORRUPT, Code.NOTADB, Code.CANTOPEN)


def connect(path: str | os.PathLike[str], *, uri: bool = False) -> sqlite3.Connection:
    # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE in `transaction`).
    return sqlite3.connect(
        path, timeout=BUSY_SLICE_S, isolation_level=None, check_same_thread=False, uri=uri
    )


def connect_rw(
    path: Path, migrations: Sequence[Migration], busy_timeout: float
) -> sqlite3.Connection:
    """A read-write connection in WAL mode, its schema migrated."""
    # Kernels opening a fresh file together get "database is locked" (switching to WAL, a
    # migration): that is contention, not damage, so wait and try again.
    deadline = time.monotonic() + busy_timeout
    while True:
        db = connect(path)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL loses nothing committed when a process dies, only on power loss.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            migrate(db, migrations)
            return db
        except sqlite3.OperationalError as error:
            db.close()
            if primary_code(error) != Code.BUSY or time.monotonic() > deadline:
                raise
            time.sleep(RETRY_PAUSE_S)
        except BaseException:
            db.close()  # which also rolls back
            raise


def check_schema(db: sqlite3.Connection, migrations: Sequence[Migration]) -> sqlite3.Connection:
    """``db`` if it holds the current schema (it is read-only: nothing can be migrated)."""
    try:
        done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
        missing = [m.__name__ for m in migrations if m.__name__ not in done]
        if missing:
            raise sqlite3.OperationalError(
                f"it is read-only and needs an update ({', '.join(missing)})"
            )
    except BaseException:
        db.close()
        raise
    return db


def migrate(db: sqlite3.Connection, migrations: Sequence[Migration]) -> None:
    """Apply, in order, the migrations not yet recorded in ``_migrations``."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied REAL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    for migration in migrations:
        if migration.__name__ in done:
            continue
        with transaction(db):
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


def settle(db: sqlite3.Connection) -> None:
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
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """A write transaction, taking the write lock up front so it cannot fail halfway on busy.

    A busy lock fails at BEGIN after a short wait (the caller retries); anything raised at any
    point, BEGIN and COMMIT included, rolls back.
    """
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
        db.execute("COMMIT")
    finally:
        settle(db)
