"""Everything that differs between SQLite, PostgreSQL and MariaDB, and nothing else.

Drivers: ``aiosqlite`` (the only asyncio SQLite driver SQLAlchemy supports), ``asyncpg`` (the
fastest PostgreSQL driver, native asyncio, server-side prepared statements) and ``asyncmy``
(asyncio MySQL/MariaDB driver with a C-accelerated protocol; SQLAlchemy's ``mysql+asyncmy``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Literal, TypeVar

import anyio
import sqlalchemy
from sqlalchemy import ColumnElement, event, make_url
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.schema import Table

from dicomweb_kit import ConfigurationError, StorageUnavailable

__all__ = [
    "Kind",
    "Pattern",
    "acquire_schema_lock",
    "create_engine",
    "create_sync_engine",
    "insert_ignore",
    "is_retryable",
    "kind_of",
    "matches_pattern",
    "release_schema_lock",
]

Kind = Literal["sqlite", "postgresql", "mysql"]

_DRIVERS: Final[dict[str, tuple[Kind, str]]] = {
    "sqlite": ("sqlite", "sqlite+aiosqlite"),
    "sqlite+aiosqlite": ("sqlite", "sqlite+aiosqlite"),
    "postgresql": ("postgresql", "postgresql+asyncpg"),
    "postgres": ("postgresql", "postgresql+asyncpg"),
    "postgresql+asyncpg": ("postgresql", "postgresql+asyncpg"),
    "mysql": ("mysql", "mysql+asyncmy"),
    "mariadb": ("mysql", "mysql+asyncmy"),
    "mysql+asyncmy": ("mysql", "mysql+asyncmy"),
    "mariadb+asyncmy": ("mysql", "mysql+asyncmy"),
}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000
SQLITE_POOL: Final = 8


def _resolve(url: str) -> tuple[Kind, URL]:
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigurationError(f"SqlIndex: {url!r} is not a database URL") from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ConfigurationError(
            f"SqlIndex: unsupported database {parsed.drivername!r} (use sqlite://, postgresql:// or mysql://)"
        )
    kind, drivername = driver
    parsed = parsed.set(drivername=drivername)
    if kind == "mysql":
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return kind, parsed


def kind_of(engine: AsyncEngine) -> Kind:
    name = engine.dialect.name
    return "postgresql" if name == "postgresql" else "sqlite" if name == "sqlite" else "mysql"


def create_engine(url: str, *, schema: str | None, echo: bool) -> tuple[Kind, AsyncEngine]:
    """An async engine for ``url`` (plain ``sqlite://``/``postgresql://``/``mysql://`` URLs map
    to the asyncio drivers) with the per-engine session settings applied on connect."""
    kind, parsed = _resolve(url)
    if schema is not None and not _IDENTIFIER.fullmatch(schema):
        raise ConfigurationError(f"SqlIndex: schema {schema!r} is not a plain SQL identifier")
    options: dict[str, Any] = {"echo": echo}
    if kind == "sqlite":
        if schema is not None:
            raise ConfigurationError("SqlIndex: schema= is for PostgreSQL and MariaDB; SQLite uses the file")
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file::memory:"):
            raise ConfigurationError("SqlIndex: an in-memory SQLite database is not supported; give a file path")
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    elif kind == "postgresql":
        options["isolation_level"] = "READ COMMITTED"
        # asyncpg prepares every statement. PostgreSQL plans its first five runs for their
        # parameters ("custom" plans), then usually settles on the generic plan. For the QIDO
        # drivers the custom plan of a scan (``PatientName=*PATCH*``: walk the (tag, study)
        # index in study order until the page is full) estimates the LIKE selectivity and
        # reads and sorts every match instead: measured ~100 ms against ~10 ms, on every new
        # pooled connection's first runs (the p95). Generic plans from the first run.
        # Parallel query: every index operation reads one page of results, where starting
        # workers (a Gather) costs more than it saves: a study list page took 5.9 ms with two
        # workers and 0.7 ms without, at 100,000 instances.
        settings = {"plan_cache_mode": "force_generic_plan", "max_parallel_workers_per_gather": "0"}
        if schema is not None:
            settings["search_path"] = schema
        options["connect_args"] = {"server_settings": settings}
    else:
        options["isolation_level"] = "READ COMMITTED"  # no gap locks on the unique-key upserts
        if schema is not None:
            parsed = parsed.set(database=schema)
        options["pool_recycle"] = 3600
    engine = create_async_engine(parsed, pool_pre_ping=kind != "sqlite", **options)
    if kind == "sqlite":
        _sqlite_events(engine.sync_engine)
    return kind, engine


def create_sync_engine(url: str, *, echo: bool) -> Engine:
    """A synchronous engine on the stdlib ``sqlite3`` driver (pysqlite) for ``sqlite://`` ``url``.

    ``SqlIndex`` runs each whole operation on it in one worker thread (see ``SqlIndex._run``).
    A pool of up to :data:`SQLITE_POOL` connections (plus overflow): WAL lets the readers run
    in parallel with the one writer. Connections move between worker threads, never used by
    two at once (the pool hands each to one checkout).
    """
    kind, parsed = _resolve(url)
    if kind != "sqlite":
        raise ConfigurationError("SqlIndex: the synchronous engine is for SQLite")
    engine = sqlalchemy.create_engine(
        parsed.set(drivername="sqlite+pysqlite"),
        echo=echo,
        poolclass=QueuePool,
        pool_size=SQLITE_POOL,
        max_overflow=2 * SQLITE_POOL,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )
    _sqlite_events(engine)
    return engine


class _SQLiteCompiler(SQLiteCompiler):
    """SQLite's compiler with table hints (``with_hint(t, "INDEXED BY ...", "sqlite")``):
    SQLAlchemy's own drops them silently, which left the planner free to pick the wrong
    index (e.g. ModalitiesInStudy scanning every Modality value row)."""

    def get_from_hint_text(self, table: Any, text: str | None) -> str | None:
        return text


def _sqlite_events(engine: Engine) -> None:
    engine.dialect.statement_compiler = _SQLiteCompiler

    @event.listens_for(engine, "connect")
    def connect(dbapi_connection: Any, _record: Any) -> None:
        # We emit BEGIN ourselves (below); pysqlite's implicit transactions would defer it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            # Pooled connections stay open: a warm page cache (64 MiB), reads through mmap,
            # and GROUP BY/DISTINCT temp b-trees in memory.
            "PRAGMA cache_size=-65536",
            "PRAGMA mmap_size=268435456",
            "PRAGMA temp_store=MEMORY",
        ):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(connection: Any) -> None:
        # Writers take the write lock up front (BEGIN IMMEDIATE): they queue on busy_timeout
        # instead of failing to upgrade a read lock; readers use WAL snapshots.
        write = connection.get_execution_options().get("dwk_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def insert_ignore(kind: Kind, table: Table, conflict: Sequence[str]) -> Insert:
    """``INSERT`` that does nothing when a row with the same unique ``conflict`` columns exists."""
    if kind == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(conflict))
    if kind == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict))
    return mysql.insert(table).prefix_with("IGNORE")


async def acquire_schema_lock(kind: Kind, conn: AsyncConnection) -> None:
    """Serialise concurrent ``open()`` calls (several workers starting at once)."""
    from sqlalchemy import text

    if kind == "postgresql":
        # Transaction-scoped: released by the migration transaction's commit/rollback.
        await conn.execute(text("SELECT pg_advisory_xact_lock(727, hashtext(current_schema()))"))
    elif kind == "mysql":
        got = await conn.scalar(text("SELECT GET_LOCK(CONCAT('dwk_schema:', DATABASE()), 120)"))
        if got != 1:
            raise TimeoutError("timed out waiting for the schema lock")
    # SQLite: the migration transaction is BEGIN IMMEDIATE, which is the lock.


async def release_schema_lock(kind: Kind, conn: AsyncConnection) -> None:
    from sqlalchemy import text

    if kind == "mysql":
        await conn.execute(text("SELECT RELEASE_LOCK(CONCAT('dwk_schema:', DATABASE()))"))


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

_PG_RETRY: Final = frozenset({"40001", "40P01", "55P03"})  # serialization failure, deadlock, lock not available
_MYSQL_RETRY: Final = frozenset({1205, 1213})  # lock wait timeout, deadlock


def _sqlstate(orig: Any) -> str | None:
    for attribute in ("sqlstate", "pgcode"):
        value = getattr(orig, attribute, None)
        if isinstance(value, str):
            return value
    cause = getattr(orig, "__cause__", None)
    value = getattr(cause, "sqlstate", None)
    return value if isinstance(value, str) else None


def is_retryable(kind: Kind, err: DBAPIError) -> bool:
    """A deadlock, serialization failure, busy database or lost unique-key race: run again."""
    if isinstance(err, IntegrityError):
        return True  # a concurrent add inserted the same unique key first; re-reading resolves it
    orig = err.orig
    if kind == "postgresql":
        return _sqlstate(orig) in _PG_RETRY
    if kind == "mysql":
        args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
        return bool(args) and args[0] in _MYSQL_RETRY
    message = str(orig).lower()
    return "database is locked" in message or "database is busy" in message


# --------------------------------------------------------------------------------------------
# Wild card patterns (PS3.4 §C.2.2.2.4)
# --------------------------------------------------------------------------------------------

ANY: Final = object()  # any run of characters (``*``)
ONE: Final = object()  # exactly one character (``?``)

Pattern = list[object]  # literal strings, ANY and ONE


def parse_wildcard(pattern: str) -> Pattern:
    """``*``/``?`` wild cards of a PS3.4 §C.2.2.2.4 pattern as :data:`Pattern` tokens."""
    tokens: Pattern = []
    for char in pattern:
        if char == "*":
            if not tokens or tokens[-1] is not ANY:
                tokens.append(ANY)
        elif char == "?":
            tokens.append(ONE)
        else:
            tokens.append(char)
    return tokens


def _like(tokens: Pattern) -> str:
    out = []
    for token in tokens:
        if token is ANY:
            out.append("%")
        elif token is ONE:
            out.append("_")
        else:
            assert isinstance(token, str)
            out.append(token.replace("!", "!!").replace("%", "!%").replace("_", "!_"))
    return "".join(out)


def _glob(tokens: Pattern) -> str:
    out = []
    for token in tokens:
        if token is ANY:
            out.append("*")
        elif token is ONE:
            out.append("?")
        else:
            assert isinstance(token, str)
            out.append("".join(f"[{c}]" if c in "*?[" else c for c in token))
    return "".join(out)


def matches_pattern(kind: Kind, column: ColumnElement[Any], tokens: Pattern) -> ColumnElement[bool]:
    """``column`` matches ``tokens`` as a whole, case-sensitively, character by character.

    SQLite's LIKE ignores ASCII case, so SQLite uses GLOB (case-sensitive); the others use LIKE
    with ``!`` as the escape character on binary-collated columns.
    """
    literals = [token for token in tokens if isinstance(token, str)]
    if len(literals) == len(tokens):
        equal: ColumnElement[bool] = column == "".join(literals)
        return equal
    if kind == "sqlite":
        glob: ColumnElement[bool] = column.op("GLOB")(_glob(tokens))
        return glob
    return column.like(_like(tokens), escape="!")


_T = TypeVar("_T")
#: Tries of one operation on deadlocks, serialization failures and busy databases.
ATTEMPTS: Final = 12


async def guarded(kind: Kind, where: str, action: Callable[[], Awaitable[_T]], doing: str) -> _T:
    """Run ``action``, again on the errors :func:`is_retryable` names (with a short random
    back-off); any other database or I/O error becomes StorageUnavailable naming ``where``."""
    for attempt in range(ATTEMPTS):
        try:
            return await action()
        except DBAPIError as err:
            if attempt + 1 < ATTEMPTS and is_retryable(kind, err):
                await anyio.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
                continue
            raise StorageUnavailable(f"The {where} failed while {doing}: {error_reason(err)}") from err
        except (SQLAlchemyError, OSError, TimeoutError) as err:
            raise StorageUnavailable(f"The {where} is unavailable while {doing}: {error_reason(err)}") from err
    raise AssertionError("unreachable")


def error_reason(err: BaseException) -> str:
    """The first line of the driver's message, for a client-facing error (no server paths)."""
    orig = getattr(err, "orig", None) or err.__cause__ or err
    text = f"{type(orig).__name__}: {orig}".strip()
    return text.splitlines()[0][:300] if text else type(err).__name__
