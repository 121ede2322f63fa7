"""Alembic migrations for Cellar's own tables (version table ``cellar_alembic_version``)."""
