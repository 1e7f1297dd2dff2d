"""Conversations kept in SQLite, per notebook, safe across kernel restarts, crashes and kernels.

This module is the :class:`Store` API; its records and row-level SQL are :mod:`.store_rows`. One
database file per user, in WAL mode, its tables built by the numbered :data:`MIGRATIONS`
(:mod:`.store_schema`). Only chat messages, system prompts, model names and token counts are
stored: never headers or credentials.

A user message is committed before its request goes out; its answer joins that message's
*exchange* (partial if interrupted or failed), and messages are read exchange by exchange, so two
kernels answering in one conversation never interleave. An exchange may carry the notebook cell it
came from (and which execution of it): a later execution of that cell takes the earlier one's
place, and the earlier one goes once the new answer is stored (see :meth:`Store.context`). Every
write is one transaction that rolls back on any exception, an interrupt included. Where the file
lives and how it is opened safely (links refused, read-only fallback, corrupt-file recovery) is
:mod:`.store_file`; waiting for another kernel, interrupts and the errors users see are
:mod:`.store_connection`; SQLite itself is :mod:`.store_sqlite`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .failures import StoreError, StoreInterrupted
from .store_connection import StoreConnection
from .store_file import StoreFile, default_path
from .store_rows import (
    ORDER,
    ChatSummary,
    Context,
    Conversation,
    NotebookSummary,
    StoredMessage,
    UsageRow,
    cell_slot,
    conversation_id,
    copy_messages,
    exchange_info,
    insert_message,
    select_messages,
    touch,
)
from .store_schema import MIGRATIONS
from .store_sqlite import transaction

__all__ = [
    "BUSY_TIMEOUT_S",
    "MIGRATIONS",
    "ChatSummary",
    "Context",
    "Conversation",
    "NotebookSummary",
    "Store",
    "StoreError",
    "StoreInterrupted",
    "StoredMessage",
    "UsageRow",
    "default_path",
]

# Long enough to wait out another kernel's largest write (forking a long conversation), short
# enough that a stuck kernel shows up as an error rather than a frozen cell.
BUSY_TIMEOUT_S = 10.0
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})

_T = TypeVar("_T")


class Store:
    """The conversation database. Thread-safe; several processes may share one file.

    ``busy_timeout`` is how long an operation waits for another kernel's write lock before
    failing with :class:`StoreError`.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, busy_timeout: float = BUSY_TIMEOUT_S
    ) -> None:
        self.path = Path(path) if path is not None else default_path()
        self._conn = StoreConnection(StoreFile(self.path, MIGRATIONS, busy_timeout))

    @property
    def notice(self) -> str | None:
        """For the user, once (a database moved aside, or read-only): see :meth:`pop_notice`."""
        return self._conn.notice

    # -- conversations -------------------------------------------------------------------

    def conversation(
        self, notebook_key: str, name: str = "main", *, create: bool = True
    ) -> Conversation | None:
        """The conversation ``name`` of a notebook; created empty if missing, unless not asked."""
        if not name:
            raise ValueError("A conversation needs a non-empty name.")

        def op(db: sqlite3.Connection) -> Conversation | None:
            conv = Conversation(notebook_key, name)
            if create and conversation_id(db, conv, create=False) is None:
                with transaction(db):
                    conversation_id(db, conv)  # unless another kernel just made it
            row = db.execute(
                "SELECT system_prompt, model FROM conversations WHERE notebook_key=? AND name=?",
                (notebook_key, name),
            ).fetchone()
            if row is None:
                return None
            conv.system_prompt, conv.model = row
            return conv

        return self._conn.run(op)

    def set_system_prompt(self, conv: Conversation, prompt: str | None) -> None:
        """Give the conversation a system prompt (``None`` removes it); it is kept with it."""
        self._conn.run(
            lambda db: touch(db, conversation_id(db, conv), system_prompt=prompt), write=True
        )
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
        cell: str | None = None,
        run: str | None = None,
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

        ``cell`` and ``run`` (a new exchange only) name the notebook cell and which execution
        of it asked: the exchange goes where :meth:`context` says, and once an answer joins it,
        the exchanges of the cell's other executions are deleted (it has replaced them).
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
            rows.append((role, text, tokens))
        if cell is None:
            run = None

        def op(db: sqlite3.Connection) -> int:
            cid, now, ex = conversation_id(db, conv), time.time(), exchange
            found = (cell_slot(db, cid, cell, run)[0], cell, run, 0) if ex is None else None
            if ex is not None and (found := exchange_info(db, cid, ex)) is not None:
                # The answer replaces the exchange's checkpoint, and its cell's other runs.
                db.execute(
                    "DELETE FROM messages WHERE conversation_id=? AND exchange=? AND partial",
                    (cid, ex),
                )
                if found[1] is not None:
                    db.execute(
                        "DELETE FROM messages WHERE conversation_id=? AND cell=? AND run IS NOT ?",
                        (cid, found[1], found[2]),
                    )
            if found is not None:
                place, *marks = found
                for role, text, tokens in rows:
                    fields = (role, text, partial, now, model, *tokens, *marks)
                    ex, place = insert_message(db, cid, ex, place, fields)
            # else reset or undone meanwhile: the answer goes, the bill stays
            if prompt_tokens is not None or completion_tokens is not None:
                db.execute(
                    "INSERT INTO usage (conversation_id, model, prompt_tokens,"
                    " completion_tokens, created) VALUES (?, ?, ?, ?, ?)",
                    (cid, model, prompt_tokens, completion_tokens, now),
                )
            touch(db, cid, **({} if model is None else {"model": model}))
            assert ex is not None  # rows is never empty
            return ex

        ex = self._conn.run(op, write=True)
        if model is not None:
            conv.model = model
        return ex

    def messages(self, conv: Conversation) -> list[StoredMessage]:
        """The conversation's messages, in order (each exchange's messages together), those of
        deleted cells included (marked ``hidden``)."""
        return self._conn.run(lambda db: select_messages(db, conv, "", ()))

    def context(
        self, conv: Conversation, *, cell: str | None = None, run: str | None = None
    ) -> Context:
        """What a new question from execution ``run`` of notebook cell ``cell`` follows.

        Without a cell, or from a cell that has not asked here before, the question goes at the
        end, after everything. A later execution of a cell goes where the cell's earlier
        exchanges stand, after only what came before them (as if the conversation were replayed
        up to that cell); a second question of the same execution goes right after the first.
        Exchanges of deleted cells are never part of it.
        """

        def op(db: sqlite3.Connection) -> Context:
            cid = conversation_id(db, conv, create=False)
            place, upto, replaces = cell_slot(db, cid, cell, run)
            if place is None:
                return Context(select_messages(db, conv, "AND NOT hidden", ()), replaces)
            before = "AND NOT hidden AND (place < ? OR (place = ? AND exchange <= ?))"
            return Context(select_messages(db, conv, before, (place, place, upto)), replaces)

        return self._conn.run(op)

    def hide_cells(self, notebook_key: str, cells: Sequence[str]) -> int:
        """Stop sending the exchanges of these (deleted) cells in any of the notebook's
        conversations; they stay in the history. Returns how many messages that touched."""
        if not cells:
            return 0
        marks = ", ".join("?" * len(cells))
        sql = (
            f"UPDATE messages SET hidden=1 WHERE NOT hidden AND cell IN ({marks}) AND"
            " conversation_id IN (SELECT id FROM conversations WHERE notebook_key=?)"
        )
        return self._conn.run(
            lambda db: db.execute(sql, (*cells, notebook_key)).rowcount, write=True
        )

    def reset(self, conv: Conversation) -> int:
        """Forget the conversation's messages (its system prompt stays); returns how many."""
        return self._delete(conv, "", {})

    def undo(self, conv: Conversation) -> int:
        """Drop the last exchange: the last user message and everything after it."""
        last = (
            f"({ORDER}) >= (SELECT {ORDER} FROM messages WHERE conversation_id=:cid"
            " AND role='user' ORDER BY place DESC, exchange DESC, id DESC LIMIT 1)"
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
            cid = conversation_id(db, conv, create=False)
            if cid is None:
                return 0
            sql = "DELETE FROM messages WHERE conversation_id=:cid"
            n = db.execute(f"{sql} AND {where}" if where else sql, {**params, "cid": cid})
            if n.rowcount:
                touch(db, cid)
            return n.rowcount

        return self._conn.run(op, write=True)

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
            src = conversation_id(db, conv, create=False)
            target = Conversation(target_key, new_name, conv.system_prompt, conv.model)
            if src is not None:
                target.system_prompt, target.model = db.execute(
                    "SELECT system_prompt, model FROM conversations WHERE id=?", (src,)
                ).fetchone()
            dst = conversation_id(db, target)
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
            touch(db, dst, system_prompt=target.system_prompt, model=target.model)
            if src is not None:
                copy_messages(db, src, dst)
            return target

        return self._conn.run(op, write=True)

    # -- summaries ---------------------------------------------------------------------------

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
        return self._conn.run(lambda db: [row_type(*row) for row in db.execute(sql, params)])

    # -- lifecycle ---------------------------------------------------------------------------

    def pop_notice(self) -> str | None:
        """The pending notice for the user (a database moved aside, or read-only), once."""
        return self._conn.pop_notice()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
