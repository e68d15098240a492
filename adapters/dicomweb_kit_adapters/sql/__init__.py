"""A SQL instance index for SQLite, PostgreSQL and MariaDB (SQLAlchemy Core, asyncio drivers).

Install with the ``sql`` extra. ``SqlIndex("sqlite:///archive.db")``,
``SqlIndex("postgresql://user@host/db")`` or ``SqlIndex("mysql://user@host/db")``; the kit calls
``await index.open()`` at start-up to create or upgrade the schema.
"""

from __future__ import annotations

from .events import PostgresEventBus
from .index import SqlIndex
from .subscriptions import SqlSubscriptionStore
from .workitems import SqlWorkitemStore

__all__ = ["PostgresEventBus", "SqlIndex", "SqlSubscriptionStore", "SqlWorkitemStore"]
