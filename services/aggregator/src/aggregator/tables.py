"""The session store's tables; ``migrations/`` creates them, on SQLite and PostgreSQL alike.

Rows are keyed by what the bus guarantees to be stable (session id, source, engine,
``segment_id``), so applying a message twice writes nothing the second time. There are no
foreign keys: transcripts may arrive before the session's events, and a session row is then
created on first sight.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

ID = 64
"""Length of every id column: session ids, sources, engines and segment ids are bus Tokens."""

store_info = Table(
    "store_info",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("session_id", String(ID), primary_key=True),
    Column("client", String(64)),
    Column("opened_at", Float),
    Column("closed_at", Float),
    Column("close_reason", String(200)),
    Column("engines", JSON, nullable=False, default=list),
    Column("session_metadata", JSON, nullable=False, default=dict),
    Column("first_seen", Float, nullable=False),
)
Index("ix_sessions_opened_at", sessions.c.opened_at)

sources = Table(
    "sources",
    metadata,
    Column("session_id", String(ID), primary_key=True),
    Column("source", String(ID), primary_key=True),
    Column("opened_at", Float),
    Column("closed_at", Float),
    Column("end_sample", BigInteger),
    Column("engines", JSON, nullable=False, default=list),
)

source_engines = Table(
    "source_engines",
    metadata,
    Column("session_id", String(ID), primary_key=True),
    Column("source", String(ID), primary_key=True),
    Column("engine", String(ID), primary_key=True),
    Column("transcribed", Boolean, nullable=False, default=False),
    Column("end_sample", BigInteger),
    Column("finals", Integer),
    Column("failure", String(500)),
)

finals = Table(
    "finals",
    metadata,
    Column("session_id", String(ID), primary_key=True),
    Column("engine", String(ID), primary_key=True),
    Column("segment_id", String(ID), primary_key=True),
    Column("source", String(ID), nullable=False),
    Column("start_sample", BigInteger, nullable=False),
    Column("end_sample", BigInteger, nullable=False),
    Column("text", Text, nullable=False),
    Column("word_count", Integer, nullable=False),
    Column("words", JSON, nullable=False, default=list),
    Column("confidence", Float),
    Column("language", String(16)),
    Column("emitted_at", Float, nullable=False),
)
Index("ix_finals_timeline", finals.c.session_id, finals.c.engine, finals.c.start_sample)

partials = Table(
    "partials",
    metadata,
    Column("session_id", String(ID), primary_key=True),
    Column("engine", String(ID), primary_key=True),
    Column("segment_id", String(ID), primary_key=True),
    Column("source", String(ID), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("start_sample", BigInteger, nullable=False),
    Column("end_sample", BigInteger, nullable=False),
    Column("text", Text, nullable=False),
    Column("emitted_at", Float, nullable=False),
)

deleted_sessions = Table(
    "deleted_sessions",
    metadata,
    Column("session_id", String(ID), primary_key=True),
    Column("deleted_at", Float, nullable=False),
)
