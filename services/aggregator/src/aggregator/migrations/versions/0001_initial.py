"""The session store: sessions, sources, per-engine progress, finals, partials, tombstones.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = 64


def upgrade() -> None:
    op.create_table(
        "store_info",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("session_id", sa.String(ID), primary_key=True),
        sa.Column("client", sa.String(64)),
        sa.Column("opened_at", sa.Float),
        sa.Column("closed_at", sa.Float),
        sa.Column("close_reason", sa.String(200)),
        sa.Column("engines", sa.JSON, nullable=False),
        sa.Column("session_metadata", sa.JSON, nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
    )
    op.create_index("ix_sessions_opened_at", "sessions", ["opened_at"])
    op.create_table(
        "sources",
        sa.Column("session_id", sa.String(ID), primary_key=True),
        sa.Column("source", sa.String(ID), primary_key=True),
        sa.Column("opened_at", sa.Float),
        sa.Column("closed_at", sa.Float),
        sa.Column("end_sample", sa.BigInteger),
        sa.Column("engines", sa.JSON, nullable=False),
    )
    op.create_table(
        "source_engines",
        sa.Column("session_id", sa.String(ID), primary_key=True),
        sa.Column("source", sa.String(ID), primary_key=True),
        sa.Column("engine", sa.String(ID), primary_key=True),
        sa.Column("transcribed", sa.Boolean, nullable=False),
        sa.Column("end_sample", sa.BigInteger),
        sa.Column("finals", sa.Integer),
    )
    op.create_table(
        "finals",
        sa.Column("session_id", sa.String(ID), primary_key=True),
        sa.Column("engine", sa.String(ID), primary_key=True),
        sa.Column("segment_id", sa.String(ID), primary_key=True),
        sa.Column("source", sa.String(ID), nullable=False),
        sa.Column("start_sample", sa.BigInteger, nullable=False),
        sa.Column("end_sample", sa.BigInteger, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("word_count", sa.Integer, nullable=False),
        sa.Column("words", sa.JSON, nullable=False),
        sa.Column("confidence", sa.Float),
        sa.Column("language", sa.String(16)),
        sa.Column("emitted_at", sa.Float, nullable=False),
    )
    op.create_index("ix_finals_timeline", "finals", ["session_id", "engine", "start_sample"])
    op.create_table(
        "partials",
        sa.Column("session_id", sa.String(ID), primary_key=True),
        sa.Column("engine", sa.String(ID), primary_key=True),
        sa.Column("segment_id", sa.String(ID), primary_key=True),
        sa.Column("source", sa.String(ID), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("start_sample", sa.BigInteger, nullable=False),
        sa.Column("end_sample", sa.BigInteger, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("emitted_at", sa.Float, nullable=False),
    )
    op.create_table(
        "deleted_sessions",
        sa.Column("session_id", sa.String(ID), primary_key=True),
        sa.Column("deleted_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "deleted_sessions",
        "partials",
        "finals",
        "source_engines",
        "sources",
        "sessions",
        "store_info",
    ):
        op.drop_table(table)
