"""The index's reused statements run on SQLite through the ``sqlite3`` driver directly.

SQLAlchemy spends ~0.1 ms of Python per execution (cache key, parameter processing, result
metadata) on statements whose SQL never changes: QIDO-RS runs five or six of them per search,
which on SQLite was most of a search's time (the database's own work was ~0.1 ms). A statement
built once (``functools.cache``, or the search module's per-shape plans) is compiled here once
by the connection's own dialect — the same SQL text SQLAlchemy would send — and then run as
``cursor.execute(sql, args)`` inside the connection's transaction. Expanding parameters
(``IN`` lists) are rendered as ``?, ?, ...`` per call, as SQLAlchemy does.

Other engines, and any driver error, take the ordinary ``Connection.execute`` path (which wraps
errors as SQLAlchemy's, for the index's retry and error handling).
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Mapping, Sequence
from typing import Any, Final

from sqlalchemy.engine import Connection

__all__ = ["fetch"]

_MAX_PREPARED: Final = 2048  # statements of evicted shapes must not pile up


class _Prepared:
    __slots__ = ("defaults", "expanding", "names", "processors", "row_type", "sql")

    def __init__(self, conn: Connection, statement: Any) -> None:
        compiled = statement.compile(dialect=conn.dialect)
        names = compiled.positiontup
        if names is None:  # pragma: no cover - the SQLite dialect is positional (qmark)
            raise TypeError("a positional dialect is needed")
        self.sql: str = compiled.string
        self.names: tuple[str, ...] = tuple(names)
        binds = compiled.binds
        self.expanding = frozenset(name for name in self.names if binds[name].expanding)
        self.defaults = {name: binds[name].effective_value for name in self.names if name not in self.expanding}
        self.processors: Mapping[str, Any] = {
            name: processor for name, processor in compiled._bind_processors.items() if name in self.names
        }
        self.row_type: Any = None


_prepared: dict[Any, _Prepared] = {}


def fetch(conn: Connection, statement: Any, params: Mapping[str, Any] | None = None) -> Sequence[Any]:
    """All rows of ``statement`` (built once and reused: it is a cache key) with ``params``:
    tuples with the columns' names as attributes, like SQLAlchemy's ``Row``."""
    params = params or {}
    if conn.dialect.name != "sqlite":
        return conn.execute(statement, params).all()
    prepared = _prepared.get(statement)
    if prepared is None:
        if len(_prepared) >= _MAX_PREPARED:
            _prepared.clear()
        prepared = _prepared[statement] = _Prepared(conn, statement)
    sql = prepared.sql
    args: list[Any] = []
    for name in prepared.names:
        if name in prepared.expanding:
            args.extend(params[name])
            continue
        value = params[name] if name in params else prepared.defaults[name]
        processor = prepared.processors.get(name)
        args.append(value if processor is None else processor(value))
    for name in prepared.expanding:
        sql = sql.replace(f"__[POSTCOMPILE_{name}]", ", ".join("?" * len(params[name])))
    try:
        cursor = conn.connection.driver_connection.execute(sql, args)  # type: ignore[union-attr]
        rows = cursor.fetchall()
    except sqlite3.Error:
        return conn.execute(statement, params).all()  # raises it wrapped, as the index expects
    if prepared.row_type is None:
        prepared.row_type = namedtuple("Row", [column[0] for column in cursor.description], rename=True)  # type: ignore[misc]
    make = prepared.row_type._make
    return [make(row) for row in rows]
