"""Why an engine gave up on a source (``source.transcribed`` with ``failure``).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("source_engines", sa.Column("failure", sa.String(500)))


def downgrade() -> None:
    op.drop_column("source_engines", "failure")
