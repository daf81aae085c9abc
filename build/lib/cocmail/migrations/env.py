"""Alembic environment: runs migrations on the engine cocmail hands over.

cocmail calls Alembic programmatically (``cocmail db upgrade``), passing its
engine through ``Config.attributes``; there is no alembic.ini and no
``fileConfig`` call, which would disable the application's loggers.
"""

from alembic import context

from cocmail.store.models import metadata

engine = context.config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
