"""Alembic environment of the SQLAlchemy backend (a package so it ships with flowkit)."""
