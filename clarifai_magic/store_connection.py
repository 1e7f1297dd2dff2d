"""The store's open connection, kept usable while operations run on it.

Every operation runs under one thread lock, retried while another kernel holds the write lock
(in short slices, so Stop ends the wait at once: :class:`StoreInterrupted`), on a fresh file if
this one turns out corrupt, on a writable file again once a read-only one was made writable.
Whatever happens, no transaction is left open. Failures become :class:`StoreError`, one
paragraph saying what to do, and the connection stays usable.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .failures import StoreError, StoreInterrupted
from .store_file import ELSEWHERE, StoreFile, file_fix
from .store_sqlite import RETRY_PAUSE_S, Code, is_corrupt, primary_code, settle, transaction

_T = TypeVar("_T")
Operation = Callable[[sqlite3.Connection], _T]


def _in_transaction(op: Operation[_T]) -> Operation[_T]:
    def in_transaction(db: sqlite3.Connection) -> _T:
        with transaction(db):
            return op(db)

    return in_transaction


class StoreConnection:
    """The connection to ``file`` that the store's operations run on. Thread-safe."""

    def __init__(self, file: StoreFile) -> None:
        self.file = file
        self._lock = threading.Lock()
        self._waited = False  # the current operation has waited for another kernel's lock
        try:
            self._opened = file.open()
        except KeyboardInterrupt:
            raise StoreInterrupted(self._interrupted_message()) from None
        self.notice = self._opened.notice  # for the user, once: see pop_notice

    @property
    def db(self) -> sqlite3.Connection:
        return self._opened.db

    @property
    def readonly(self) -> bool:
        """Reads work, writes raise StoreError."""
        return self._opened.readonly

    @property
    def path(self) -> Path:
        return self.file.path

    def run(self, op: Operation[_T], *, write: bool = False) -> _T:
        """``op(db)``, in one write transaction if ``write``; see the module's docstring."""
        try:
            with self._lock:
                self._waited = False
                return self._attempt(_in_transaction(op) if write else op)
        except KeyboardInterrupt as interrupt:
            if isinstance(interrupt, StoreInterrupted):
                raise
            raise StoreInterrupted(self._interrupted_message()) from None

    def _attempt(self, op: Operation[_T]) -> _T:
        deadline = time.monotonic() + self.file.busy_timeout
        recovered = reopened = False
        while True:
            db = self.db
            try:
                settle(db)  # in case an earlier interrupt beat even the rollback
                return op(db)
            except sqlite3.DatabaseError as error:
                code = primary_code(error)
                if code == Code.BUSY and time.monotonic() < deadline:
                    self._waited = True
                    time.sleep(RETRY_PAUSE_S)
                    continue
                if code == Code.READONLY and self.readonly and not reopened:
                    reopened = True  # made writable since? (the notice says how)
                    if self._reopen_writable():
                        continue
                if is_corrupt(error) and not recovered and not self.readonly:
                    recovered = True
                    # The old connection stays until a new one exists: if recovery fails (a
                    # link planted at the lock), the next operation finds the damage again.
                    fresh = self.file.recover(self._opened.file_id, error)
                    self.db.close()
                    self._opened, self.notice = fresh, fresh.notice
                    continue
                raise self._store_error(error) from error
            finally:
                settle(db)

    def _reopen_writable(self) -> bool:
        try:
            opened = self.file.open_file()
        except (sqlite3.DatabaseError, OSError):
            return False
        if opened.readonly:
            opened.db.close()
            return False
        self.db.close()
        self._opened = opened
        return True

    def pop_notice(self) -> str | None:
        """The pending notice for the user (a database moved aside, or read-only), once."""
        with self._lock:
            notice, self.notice = self.notice, None
            return notice

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def _store_error(self, error: sqlite3.DatabaseError) -> StoreError:
        code, elsewhere = primary_code(error), f"{ELSEWHERE} and restart the kernel."
        if code == Code.BUSY:
            what = (
                "is busy: another kernel has held its write lock for over"
                f" {self.file.busy_timeout:.0f} s, so this was not saved. Run the cell again in"
                " a moment; if that keeps happening, look for a notebook whose cell is still"
                " running or stuck, and interrupt or restart its kernel."
            )
        elif code == Code.FULL:
            what = (
                "could not be updated because the disk is full, so this was not saved (nothing"
                f" was half-written). Free some disk space and run the cell again, or{elsewhere}"
            )
        elif code == Code.READONLY:
            reason, fix = self._opened.why_readonly if self.readonly else file_fix(self.path)
            what = (
                f"is read-only ({reason}), so this could not be saved. Make it writable (`{fix}`)"
                f" and run the cell again (--no-history asks without saving), or{elsewhere}"
            )
        elif code == Code.IOERR:
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
