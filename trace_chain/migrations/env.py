"""Alembic environment for the data DB; configured by trace_chain.db.alembic_config()."""

from alembic import context

from trace_chain.db import create_data_engine, data_db_url, sqlalchemy_url

url = context.config.attributes.get("data_db_url") or data_db_url()
# Tables are SQLAlchemy Core objects declared in migrations; no autogenerate metadata yet.
target_metadata = None


def run_offline() -> None:
    context.configure(url=sqlalchemy_url(url), literal_binds=True, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_data_engine(url, pool_pre_ping=False)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=target_metadata)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
