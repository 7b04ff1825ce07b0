"""Run Alembic migrations programmatically (the CLI and the tests both use this)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from orgbill.config import Settings


def _find_alembic_ini() -> Path:
    for candidate in (
        Path.cwd() / "alembic.ini",
        Path(__file__).resolve().parents[2] / "alembic.ini",
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("alembic.ini not found: run from the orgbill checkout")


def alembic_config(settings: Settings) -> Config:
    config = Config(str(_find_alembic_ini()))
    config.attributes["settings"] = settings
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings, revision: str = "base") -> None:
    command.downgrade(alembic_config(settings), revision)
