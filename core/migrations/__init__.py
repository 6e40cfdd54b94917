"""Alembic migrations of the registry schema (run automatically when a registry opens)."""
