"""Initial arena schema: participants, sessions, battles, turns, votes, settings.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "participants",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("email", sa.String(255), nullable=True),
        sa.Column("basque_level", sa.String(16), nullable=False),
        sa.Column("education", sa.String(32), nullable=False),
        sa.Column("consent_version", sa.String(16), nullable=False),
        sa.Column("consent_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("flag_reasons", sa.String(255), nullable=False, server_default=""),
    )
    op.create_index("ix_participants_username", "participants", ["username"], unique=True)
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("participant_id", sa.String(40), sa.ForeignKey("participants.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_sessions_participant_id", "sessions", ["participant_id"])
    op.create_table(
        "battles",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("participant_id", sa.String(40), sa.ForeignKey("participants.id"), nullable=False),
        sa.Column("model_a", sa.String(128), nullable=False),
        sa.Column("model_b", sa.String(128), nullable=False),
        sa.Column("settings_a", sa.Text(), nullable=False),
        sa.Column("settings_b", sa.Text(), nullable=False),
        sa.Column("sampling", sa.String(16), nullable=False),
        sa.Column("is_control", sa.Boolean(), nullable=False),
        sa.Column("control_good", sa.String(8), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_answer_at", sa.DateTime(), nullable=True),
        sa.Column("status", sa.String(8), nullable=False),
    )
    op.create_index("ix_battles_participant_id", "battles", ["participant_id"])
    op.create_table(
        "turns",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("battle_id", sa.String(40), sa.ForeignKey("battles.id"), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("user", sa.Text(), nullable=False),
        sa.Column("answer_a", sa.Text(), nullable=False),
        sa.Column("answer_b", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("battle_id", "idx"),
    )
    op.create_index("ix_turns_battle_id", "turns", ["battle_id"])
    op.create_table(
        "votes",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("battle_id", sa.String(40), sa.ForeignKey("battles.id"), nullable=False, unique=True),
        sa.Column("participant_id", sa.String(40), sa.ForeignKey("participants.id"), nullable=False),
        sa.Column("model_a", sa.String(128), nullable=False),
        sa.Column("model_b", sa.String(128), nullable=False),
        sa.Column("winner", sa.String(8), nullable=False),
        sa.Column("winner_content", sa.String(8), nullable=False),
        sa.Column("winner_language", sa.String(8), nullable=False),
        sa.Column("winner_overall", sa.String(8), nullable=True),
        sa.Column("is_control", sa.Boolean(), nullable=False),
        sa.Column("control_passed", sa.Boolean(), nullable=True),
        sa.Column("reading_seconds", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_votes_participant_id", "votes", ["participant_id"])
    op.create_index("ix_votes_created_at", "votes", ["created_at"])
    op.create_table("settings", sa.Column("key", sa.String(64), primary_key=True),
                    sa.Column("value", sa.Text(), nullable=False))


def downgrade() -> None:
    for table in ("settings", "votes", "turns", "battles", "sessions", "participants"):
        op.drop_table(table)
