"""Chain access, the data-plane schema (SQLAlchemy Core + Alembic), cold storage and query."""
