"""Alembic revisions of the SQLAlchemy backend, one module each, oldest first by id."""
