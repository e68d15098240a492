"""The index's reused statements run on SQLite through the ``sqlite3`` driver directly.

SQLAlchemy spends ~0.1 ms of Python per execution (cache key, parameter processing, result
metadata) on statements whose SQL never changes: QIDO-RS runs five or six of them per search,
which on SQLite was most of a search's time (the database's own work was ~0.1 ms). A statement
built once (``functools.cache``, or the search module's per-shape plans) is compiled here once
by the connection's own dialect — the same SQL text SQLAlchemy would send — and then run as
``cursor.execute(sql, args)`` inside the connection's transaction. Expanding parameters
(``IN`` lists) are rendered as ``?, ?, ...`` per call, as SQLAlchemy does.

Writes (:class:`SqliteStatements`, the group commit of ``SqlIndex.add_many``) run the same way,
bulk inserts as one ``cursor.executemany``; a driver error is raised exactly as
``Connection.execute`` raises it (wrapped by the connection's own handler), so the index's retry
and error mapping see no difference. :class:`Statements` is the ordinary SQLAlchemy path with the
same interface, for the other engines.

Reads on other engines, and any driver error of a read, take the ordinary
``Connection.execute`` path (which wraps errors as SQLAlchemy's, for the index's retry and error
handling).
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Final, NoReturn

from sqlalchemy import Boolean, LargeBinary
from sqlalchemy.engine import Connection
from sqlalchemy.exc import InvalidRequestError

__all__ = ["SqliteStatements", "Statements", "fetch"]

_MAX_PREPARED: Final = 2048  # statements of evicted shapes must not pile up

# Bind processors the writes skip: they only turn the values the index writes (bytes, bool) into
# what ``sqlite3`` binds identically anyway (a memoryview BLOB, an int).
_DRIVER_NATIVE: Final = (LargeBinary, Boolean)


class _Prepared:
    __slots__ = ("defaults", "expanding", "names", "processors", "required", "row_type", "sql", "write_processors")

    def __init__(self, conn: Connection, statement: Any, column_keys: Sequence[str] | None = None) -> None:
        # column_keys as SQLAlchemy passes them: an INSERT/UPDATE gets the parameters' columns.
        compiled = statement.compile(dialect=conn.dialect, column_keys=column_keys)
        names = compiled.positiontup
        if names is None:  # pragma: no cover - the SQLite dialect is positional (qmark)
            raise TypeError("a positional dialect is needed")
        if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
            raise TypeError("a statement with Python-side column defaults needs SQLAlchemy to run it")
        self.sql: str = compiled.string
        self.names: tuple[str, ...] = tuple(names)
        binds = compiled.binds
        self.expanding = frozenset(name for name in self.names if binds[name].expanding)
        self.defaults = {name: binds[name].effective_value for name in self.names if name not in self.expanding}
        self.required = frozenset(name for name in self.names if binds[name].required)
        self.processors: Mapping[str, Any] = {
            name: processor for name, processor in compiled._bind_processors.items() if name in self.names
        }
        self.write_processors: Mapping[str, Any] = {
            name: processor
            for name, processor in self.processors.items()
            if not isinstance(binds[name].type, _DRIVER_NATIVE)
        }
        self.row_type: Any = None


_prepared: dict[Any, _Prepared] = {}


def _prepare(conn: Connection, key: Any, statement: Any, column_keys: Sequence[str] | None = None) -> _Prepared:
    prepared = _prepared.get(key)
    if prepared is None:
        if len(_prepared) >= _MAX_PREPARED:
            _prepared.clear()
        prepared = _prepared[key] = _Prepared(conn, statement, column_keys)
    return prepared


def fetch(conn: Connection, statement: Any, params: Mapping[str, Any] | None = None) -> Sequence[Any]:
    """All rows of ``statement`` (built once and reused: it is a cache key) with ``params``:
    tuples with the columns' names as attributes, like SQLAlchemy's ``Row``."""
    params = params or {}
    if conn.dialect.name != "sqlite":
        return conn.execute(statement, params).all()
    prepared = _prepare(conn, statement, statement)
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


# --------------------------------------------------------------------------------------------
# Statements of one transaction: SQLAlchemy's path, and SQLite's driver path
# --------------------------------------------------------------------------------------------


class Statements:
    """Runs reused statements (built once: they are cache keys) in ``conn``'s transaction
    through ``Connection.execute``: the ordinary path, on every engine."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def rows(self, statement: Any, params: Mapping[str, Any]) -> Sequence[Any]:
        """All rows of a query, with the columns' names as attributes."""
        return self.conn.execute(statement, params).all()

    def execute(self, statement: Any, params: Sequence[Mapping[str, Any]]) -> None:
        """``statement`` once per mapping of ``params`` (all with the same keys), in order."""
        if params:
            self.conn.execute(statement, list(params))

    def insert(self, statement: Any, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows``, each the values of ``columns`` in that order."""
        if rows:
            self.conn.execute(statement, [dict(zip(columns, row, strict=True)) for row in rows])

    def insert_one(self, statement: Any, row: Mapping[str, Any]) -> int:
        """Insert one row; its new (integer) primary key."""
        key = self.conn.execute(statement, row).inserted_primary_key
        assert key is not None
        return int(key[0])


class SqliteStatements(Statements):
    """:class:`Statements` on SQLite's ``sqlite3`` driver: each statement compiled once by the
    connection's dialect, then only ``cursor.execute``/``executemany``."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self._driver: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]

    def rows(self, statement: Any, params: Mapping[str, Any]) -> Sequence[Any]:
        return fetch(self.conn, statement, params)

    def execute(self, statement: Any, params: Sequence[Mapping[str, Any]]) -> None:
        if not params:
            return
        keys = tuple(sorted(params[0]))
        prepared = _prepare(self.conn, (statement, keys), statement, keys)
        if prepared.expanding:
            raise TypeError("expanding parameters are for rows()")
        self._executemany(prepared.sql, [_args(prepared, row) for row in params])

    def insert(self, statement: Any, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        columns = tuple(columns)
        prepared = _prepare(self.conn, (statement, columns), statement, columns)
        order = tuple(columns.index(name) for name in prepared.names)
        if order != tuple(range(len(columns))):  # the table's column order differs from the rows'
            pick = itemgetter(*order)
            rows = [pick(row) for row in rows]
        for name, processor in prepared.write_processors.items():
            rows = _processed(rows, prepared.names.index(name), processor)
        self._executemany(prepared.sql, rows)

    def insert_one(self, statement: Any, row: Mapping[str, Any]) -> int:
        keys = tuple(sorted(row))
        prepared = _prepare(self.conn, (statement, keys), statement, keys)
        cursor = self._driver.cursor()
        try:
            cursor.execute(prepared.sql, _args(prepared, row))
        except sqlite3.Error as err:
            _raise_wrapped(self.conn, err, prepared.sql, row, cursor)
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        cursor = self._driver.cursor()
        try:
            cursor.executemany(sql, rows)
        except sqlite3.Error as err:
            _raise_wrapped(self.conn, err, sql, rows, cursor)


def _args(prepared: _Prepared, row: Mapping[str, Any]) -> tuple[Any, ...]:
    """``row``'s values in the statement's parameter order (its own literals where ``row`` has none)."""
    out = []
    for name in prepared.names:
        if name in row:
            value = row[name]
        elif name in prepared.required:
            raise InvalidRequestError(f"A value is required for bind parameter {name!r}")  # as SQLAlchemy
        else:
            value = prepared.defaults[name]
        processor = prepared.write_processors.get(name)
        out.append(value if processor is None else processor(value))
    return tuple(out)


def _processed(rows: Sequence[Sequence[Any]], position: int, processor: Callable[[Any], Any]) -> list[tuple[Any, ...]]:
    return [(*row[:position], processor(row[position]), *row[position + 1 :]) for row in rows]


def _raise_wrapped(conn: Connection, err: sqlite3.Error, sql: str, params: Any, cursor: Any) -> NoReturn:
    """Raise ``err`` as ``Connection.execute`` would: through the handler it calls (private, so
    the tests compare both paths' errors), which wraps it (``IntegrityError``,
    ``OperationalError``, ...), runs ``handle_error`` hooks and invalidates a disconnected
    connection."""
    conn._handle_dbapi_exception(err, sql, params, cursor, None)
