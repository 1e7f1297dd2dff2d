"""The store's tables, built by numbered migrations.

Each migration runs once, in order, inside its own write transaction, and is recorded by its
function name in ``_migrations``. Append new ones (``m002_...``, ``m003_...``) to
:data:`MIGRATIONS`; never edit one that has shipped: databases out there already ran it.
"""

from __future__ import annotations

import sqlite3

from .store_sqlite import Migration


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


def m002_cells(db: sqlite3.Connection) -> None:
    """Exchanges remember the notebook cell they came from, so re-running a cell replaces its
    exchange where it stands instead of appending another one."""
    # `cell` and `run` (which execution of the cell) are the same on every message of an
    # exchange; NULL for exchanges without a cell (terminal, panel, before this migration).
    db.execute("ALTER TABLE messages ADD COLUMN cell TEXT")
    db.execute("ALTER TABLE messages ADD COLUMN run TEXT")
    # Where the exchange stands: its own id, or the place of the exchange it replaced.
    # Conversations are read in (place, exchange, id) order.
    db.execute("ALTER TABLE messages ADD COLUMN place INTEGER NOT NULL DEFAULT 0")
    db.execute("UPDATE messages SET place = exchange")
    # Its cell was deleted from the notebook: kept for the history, no longer sent.
    db.execute("ALTER TABLE messages ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX messages_place ON messages (conversation_id, place, exchange, id)")
    db.execute("CREATE INDEX messages_cell ON messages (conversation_id, cell)")


MIGRATIONS: tuple[Migration, ...] = (m001_initial, m002_cells)
