"""The store's records and the SQL over its rows.

Records cross the store's API (:class:`Conversation`, :class:`StoredMessage`, summaries); the
helpers are the statements the :class:`~clarifai_magic.store.Store` composes inside its
transactions: a conversation's id, messages in conversation order, where a cell's new exchange
goes, inserting and copying messages. Messages are read in (place, exchange, id) order: an
exchange stands at its own id, or at the place of the cell exchange it replaced.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


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
    exchange: int = 0
    cell: str | None = None  # the notebook cell its exchange came from
    hidden: bool = False  # that cell was deleted: kept here, no longer sent


@dataclass
class Context:
    """Where a new question of a cell stands in a conversation: what it follows, what it replaces.

    ``messages`` are the stored messages before that place that are still sent (not those of
    deleted cells); ``replaces`` counts the exchanges of earlier executions of the same cell that
    its answer will take the place of.
    """

    messages: list[StoredMessage]
    replaces: int = 0


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


# The columns after (conversation_id, exchange, place), in the order insert_message takes them.
MESSAGE_FIELDS = (
    "role, message, partial, created, model, prompt_tokens, completion_tokens, cell, run, hidden"
)
INSERT_MESSAGE = (
    f"INSERT INTO messages (conversation_id, exchange, place, {MESSAGE_FIELDS})"
    f" VALUES (?, ?, ?{', ?' * (MESSAGE_FIELDS.count(',') + 1)})"
)
# Conversation order: by place, then exchange (a cell's exchanges of one execution share a place).
ORDER = "place, exchange, id"


def conversation_id(
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


def touch(db: sqlite3.Connection, cid: int | None, **columns: Any) -> None:
    """Set ``columns`` of conversation ``cid`` (names from this module only) and mark it used."""
    assignments = "".join(f"{name}=?, " for name in columns)
    db.execute(
        f"UPDATE conversations SET {assignments}updated=? WHERE id=?",
        (*columns.values(), time.time(), cid),
    )


def select_messages(
    db: sqlite3.Connection, conv: Conversation, where: str, params: tuple[Any, ...]
) -> list[StoredMessage]:
    """The conversation's messages matching ``where`` (SQL after the conversation's own), in
    conversation order."""
    cid = conversation_id(db, conv, create=False)
    if cid is None:
        return []
    rows = db.execute(
        "SELECT message, partial, created, model, prompt_tokens, completion_tokens, exchange,"
        f" cell, hidden FROM messages WHERE conversation_id=? {where} ORDER BY {ORDER}",
        (cid, *params),
    ).fetchall()
    loads = json.loads
    return [StoredMessage(loads(r[0]), bool(r[1]), *r[2:8], bool(r[8])) for r in rows]


def cell_slot(
    db: sqlite3.Connection, cid: int | None, cell: str | None, run: str | None
) -> tuple[int | None, int | None, int]:
    """Where a new exchange of ``cell`` (execution ``run``) goes: (place, last exchange before
    it at that place, how many exchanges of other executions it replaces). ``(None, None, 0)``:
    at the end, in a place of its own."""
    if cell is None or cid is None:
        return None, None, 0
    rows = db.execute(
        "SELECT DISTINCT exchange, place, run IS ? FROM messages WHERE conversation_id=?"
        " AND cell=?",
        (run, cid, cell),
    ).fetchall()
    earlier = [(place, exchange) for exchange, place, same in rows if not same]
    this_run = [(place, exchange) for exchange, place, same in rows if same]
    if this_run:  # a second question of one execution: right after the first
        return (*max(this_run), len(earlier))
    if earlier:
        return min(earlier)[0], 0, len(earlier)
    return None, None, 0


def exchange_info(
    db: sqlite3.Connection, cid: int | None, exchange: int
) -> tuple[int, str | None, str | None, int] | None:
    """(place, cell, run, hidden) of a stored exchange; None if it is gone."""
    return db.execute(
        "SELECT place, cell, run, hidden FROM messages WHERE conversation_id=? AND exchange=?"
        " LIMIT 1",
        (cid, exchange),
    ).fetchone()


def insert_message(
    db: sqlite3.Connection,
    cid: int | None,
    exchange: int | None,
    place: int | None,
    fields: Sequence[Any],
) -> tuple[int, int]:
    """Insert one message (``MESSAGE_FIELDS``) into ``exchange``, or into a new exchange named
    after it when ``exchange`` is None (known only once inserted); return the exchange and its
    place (``None``: the new exchange's own id, a place at the end)."""
    cur = db.execute(INSERT_MESSAGE, (cid, exchange or 0, place or 0, *fields))
    if exchange is None:
        exchange = cur.lastrowid
        assert exchange is not None
        place = place or exchange
        db.execute(
            "UPDATE messages SET exchange=?, place=? WHERE id=?", (exchange, place, exchange)
        )
    assert place is not None
    return exchange, place


def copy_messages(db: sqlite3.Connection, src: int, dst: int) -> None:
    """Copy conversation ``src``'s messages to ``dst`` in order, each exchange to a new one at
    a place of its own (new ids ascend, so the order holds)."""
    exchanges: dict[int, tuple[int, int]] = {}
    rows = db.execute(
        f"SELECT exchange, {MESSAGE_FIELDS} FROM messages WHERE conversation_id=? ORDER BY {ORDER}",
        (src,),
    ).fetchall()
    for exchange, *fields in rows:
        ex, place = exchanges.get(exchange, (None, None))
        exchanges[exchange] = insert_message(db, dst, ex, place, fields)
