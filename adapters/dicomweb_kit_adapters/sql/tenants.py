"""Where a tenant's index lives: the same tables, in a database namespace of the tenant's own.

* SQLite: a database file of its own, ``<dir of the index file>/tenants/<tenant>/<file name>``.
* PostgreSQL: a schema of its own, ``<base>_t_<tenant>`` (``base`` = the index's ``schema=``,
  else ``dwk``), created on first use.
* MariaDB: a database of its own, ``<base>_t_<tenant>`` (``base`` = ``schema=``, else the URL's
  database), created on first use.

A namespace per tenant rather than a tenant column in every table and key: every statement of
the index (and of the workitem, subscription and change-feed stores on its database) is then
isolated by construction, a tenant can be backed up, moved or dropped as one, and queries keep
the plans of a single-tenant archive. The price is a connection pool per open tenant (on
PostgreSQL and MariaDB up to 5 + 10 connections each, SQLAlchemy's defaults): size the server's
``max_connections`` for the tenants one worker serves.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from dicomweb_kit import tenant_identifier

from .dialects import Kind

__all__ = ["create_namespace", "tenant_location"]


def tenant_location(kind: Kind, url: str, schema: str | None, tenant: str) -> tuple[str, str | None]:
    """The URL and ``schema=`` of ``tenant``'s index, for an index at ``url`` / ``schema``."""
    if kind == "sqlite":
        parsed = make_url(url)
        path = Path(parsed.database or "")
        return parsed.set(database=str(path.parent / "tenants" / tenant / path.name)).render_as_string(
            hide_password=False
        ), None
    base = schema or ("dwk" if kind == "postgresql" else make_url(url).database or "dwk")
    return url, tenant_identifier(base, tenant, max_length=63 if kind == "postgresql" else 64)


async def create_namespace(kind: Kind, engine: AsyncEngine, url: str, schema: str | None) -> None:
    """Create the file's directory, the schema or the database of a tenant's index if missing
    (``engine``: one on the parent index's database, which may create it)."""
    if kind == "sqlite":
        Path(make_url(url).database or "").parent.mkdir(parents=True, exist_ok=True)
        return
    assert schema is not None
    if kind == "postgresql":
        statement = f'CREATE SCHEMA IF NOT EXISTS "{schema}"'
    else:
        statement = f"CREATE DATABASE IF NOT EXISTS `{schema}` CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"
    try:
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    except DBAPIError:
        # Two workers creating the same schema at once: PostgreSQL's IF NOT EXISTS can still
        # lose the race on its catalog's unique index. Whoever won made it; check it is there.
        async with engine.connect() as conn:
            await conn.execute(text(statement))
