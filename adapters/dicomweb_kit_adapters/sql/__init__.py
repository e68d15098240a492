"""A SQL instance index for SQLite, PostgreSQL and MariaDB (SQLAlchemy Core, asyncio drivers).

Install with the ``sql`` extra. ``SqlIndex("sqlite:///archive.db")``,
``SqlIndex("postgresql://user@host/db")`` or ``SqlIndex("mysql://user@host/db")``; the kit calls
``await index.open()`` at start-up to create or upgrade the schema.
"""

from __future__ import annotations

from .index import SqlIndex
from .workitems import SqlWorkitemStore

__all__ = ["SqlIndex", "SqlWorkitemStore"]
