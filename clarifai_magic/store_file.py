"""The conversation database file: where it lives, and opening it safely.

One file per user (see :func:`default_path`), mode 0600 in a 0700 directory. Symbolic links at
the file, its lock or SQLite's ``-wal``/``-shm``/``-journal`` are refused. A healthy database
that cannot be written opens read-only; a corrupt one is renamed ``<name>.corrupt-<timestamp>``
and a fresh one started, one kernel at a time (an OS lock on ``<name>.lock``); if no file can be
used, conversations are kept in memory. Each of these comes with a notice for the user.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path

from .failures import StoreError
from .store_sqlite import (
    Code,
    Migration,
    check_schema,
    connect,
    connect_rw,
    is_corrupt,
    is_unusable,
    migrate,
    primary_code,
)

APP_DIR = "clarifai-magic"
DB_NAME = "conversations.db"
# Files SQLite opens next to the database; it follows links there as at the database itself.
_SIDE_FILES = ("-wal", "-shm", "-journal")
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # POSIX; elsewhere the lstat check stands alone
ELSEWHERE = " set CLARIFAI_MAGIC_HOME to another directory (on another disk if need be)"

# (device, inode): which file a path names, to tell whether another kernel replaced it.
FileId = tuple[int, int]


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


@dataclass(frozen=True)
class Opened:
    """A connection to the database and how it came to be open."""

    db: sqlite3.Connection
    notice: str | None = None  # for the user, once
    readonly: bool = False  # reads work, writes fail with READONLY
    why_readonly: tuple[str, str] = ("", "")  # (reason, the command that fixes it)
    file_id: FileId | None = None  # the file db has open; None in memory


@dataclass(frozen=True)
class StoreFile:
    """The database at ``path``, its schema built by ``migrations``."""

    path: Path
    migrations: Sequence[Migration]
    busy_timeout: float

    def open(self) -> Opened:
        """Open the file (no lock needed while all is well), else recover."""
        seen = identity(self.path)
        try:
            return self.open_file()
        except (sqlite3.DatabaseError, OSError) as error:
            return self.recover(seen, error)

    def recover(self, failed: FileId | None, cause: Exception) -> Opened:
        """A usable database, and a notice for the user, after the file ``failed`` gave ``cause``.

        Kernels that meet a broken file together take turns under an OS lock on a sidecar
        file: the first moves the file aside and starts a fresh one, the others find it
        replaced and open that. If no file can be used, conversations are kept in memory.
        """
        try:
            with _exclusive(self.path.with_name(f"{self.path.name}.lock")):
                current = identity(self.path)
                replaced = failed is not None and current != failed
                # The same file, which SQLite called corrupt, would only fail again; anything
                # else (another kernel replaced it, a permission just fixed...) is worth a retry.
                if replaced or not is_corrupt(cause):
                    try:
                        opened = self.open_file()
                        notice = opened.notice or (self._replaced_notice() if replaced else None)
                        return replace(opened, notice=notice)
                    except (sqlite3.DatabaseError, OSError) as error:
                        cause = error
                if not (is_unusable(cause) and self.path.is_file()):
                    raise cause
                moved = _move_aside(self.path)
                opened = self.open_file()
        except (sqlite3.DatabaseError, OSError) as error:
            db = connect(":memory:")
            migrate(db, self.migrations)
            return Opened(
                db,
                f"The conversation store {self.path} could not be opened ({error}), so this"
                " session's conversations are kept in memory only and will be lost when the"
                " kernel stops. Check that you can read and write it and its directory, or set"
                " CLARIFAI_MAGIC_HOME to another directory, and restart the kernel.",
            )
        if moved is None:  # someone outside our lock moved or deleted it meanwhile
            return replace(opened, notice=self._replaced_notice())
        return replace(
            opened,
            notice=f"The conversation store {self.path} could not be read ({cause}), so it was"
            f" moved to {moved} and a fresh one started: earlier conversations are not"
            " available. Keep the moved file if you want to try to recover them.",
        )

    def _replaced_notice(self) -> str:
        return (
            f"The conversation store {self.path} could not be read, and another kernel has"
            f" replaced it with a fresh one (the old file was moved to {self.path.name}.corrupt-*"
            " next to it): earlier conversations are not available here."
        )

    def open_file(self) -> Opened:
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
                return self._open_readonly(file_fix(path))
            raise
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and not st.st_mode & 0o222:
                # Made read-only on purpose: honoured even where the OS would allow (root).
                return self._open_readonly(file_fix(path))
            if hasattr(os, "fchmod") and _owned(st) and stat.S_IMODE(st.st_mode) != 0o600:
                os.fchmod(fd, 0o600)  # through our descriptor: never through a link
        finally:
            os.close(fd)
        _writable_side_files(path)
        try:
            db = connect_rw(path, self.migrations, self.busy_timeout)
        except sqlite3.DatabaseError as error:
            if primary_code(error) != Code.READONLY:
                raise
            why = (f"its directory {path.parent} is read-only", f"chmod u+w {path.parent}")
            return self._open_readonly(why)
        try:
            _refuse_links(path)  # planted between our check and SQLite's own open?
        except BaseException:
            db.close()
            raise
        return Opened(db, file_id=(st.st_dev, st.st_ino))

    def _open_readonly(self, why: tuple[str, str]) -> Opened:
        uri = self.path.absolute().as_uri() + "?mode=ro"
        try:
            db = check_schema(connect(uri, uri=True), self.migrations)
        except sqlite3.DatabaseError as error:
            # In a read-only directory SQLite cannot make the -shm file a WAL database needs;
            # without a -wal file nothing waits to be checkpointed, so the file is all there is.
            if primary_code(error) not in (Code.READONLY, Code.CANTOPEN) or os.path.lexists(
                f"{self.path}-wal"
            ):
                raise
            db = check_schema(connect(uri + "&immutable=1", uri=True), self.migrations)
        reason, fix = why
        notice = (
            f"The conversation store {self.path} is read-only ({reason}), so your conversations"
            " are shown but nothing new is saved, and asking in a conversation fails. To save"
            f" again, make it writable (`{fix}`) and run the cell again, or{ELSEWHERE} and"
            " restart the kernel."
        )
        return Opened(db, notice, readonly=True, why_readonly=why, file_id=identity(self.path))


def identity(path: Path) -> FileId | None:
    """Which file ``path`` names now, or None if none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def file_fix(path: Path) -> tuple[str, str]:
    """Why a file is read-only, and the command that makes it writable."""
    return "its file mode does not allow writing", f"chmod u+w {path}"


def _owned(st: os.stat_result) -> bool:
    return not hasattr(os, "geteuid") or st.st_uid == os.geteuid()


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


def _make_private_dir(path: Path) -> None:
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with suppress(FileExistsError):  # another process made it first
            directory.mkdir(mode=0o700)
            os.chmod(directory, 0o700)  # mkdir's mode is subject to the umask
