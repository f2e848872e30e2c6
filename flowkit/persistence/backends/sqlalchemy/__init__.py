"""Schema and Alembic migrations of the SQLAlchemy persistence backend.

``tables`` describes the current schema for the backend's queries; the
``migrations`` package holds the Alembic environment and revisions that build
and evolve it in a real database. :data:`REVISIONS` lists every revision this
flowkit ships, oldest first, so the backend can recognise a database written
by a newer flowkit without loading Alembic (a test keeps the list and the
revision files in step).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ALEMBIC_INI", "HEAD", "REVISIONS"]

REVISIONS: tuple[str, ...] = ("0001", "0002", "0003")
"""Every Alembic revision id known to this flowkit, oldest first."""

HEAD: str = REVISIONS[-1]
"""The newest revision: what ``upgrade()`` brings a database to."""

ALEMBIC_INI: Path = Path(__file__).with_name("alembic.ini")
"""The Alembic configuration shipped in the package (found by path, never from the cwd)."""
