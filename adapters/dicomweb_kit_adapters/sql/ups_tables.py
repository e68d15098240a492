"""The tables of schema version 6: UPS subscriptions, per-AE event logs, and the PostgreSQL event
bus's stored messages (created on every engine; only PostgreSQL's bus writes the last one).

* ``dwk_ups_subscriptions``: one row per (AE, target); target is a workitem UID or one of the
  two worklist UIDs. ``origin`` says what made a workitem subscription (an explicit subscribe or
  a worklist/filtered worklist subscription), ``match_keys`` holds a filtered subscription's keys
  (JSON list of ``[key, value]``).
* ``dwk_ups_subscribers``: one row per AE with an event log: the last sequence number given out
  (``last_seq``) and the last one sent on its channel (``sent_seq``).
* ``dwk_ups_event_log``: (AE, seq) -> one event report's DICOM JSON.
* ``dwk_bus_messages``: event bus messages too large for a ``NOTIFY`` payload.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Index, Table, func

from .schema import _MYSQL, _blob, _id, _text, metadata

__all__ = ["bus_messages", "event_log", "subscribers", "subscriptions"]

subscriptions = Table(
    "dwk_ups_subscriptions",
    metadata,
    Column("id", _id(), primary_key=True, autoincrement=True),
    Column("ae_title", _text(16), nullable=False),
    Column("target", _text(64), nullable=False),
    Column("deletion_lock", Boolean, nullable=False),
    Column("origin", _text(16), nullable=False),
    Column("match_keys", _blob, nullable=True),
    Index("dwk_ups_subscriptions_ae_target", "ae_title", "target", unique=True),
    Index("dwk_ups_subscriptions_target", "target"),
    sqlite_autoincrement=True,
    **_MYSQL,
)

subscribers = Table(
    "dwk_ups_subscribers",
    metadata,
    Column("ae_title", _text(16), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
    Column("sent_seq", BigInteger, nullable=False),
    **_MYSQL,
)

event_log = Table(
    "dwk_ups_event_log",
    metadata,
    Column("ae_title", _text(16), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("message", _blob, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.current_timestamp()),
    **_MYSQL,
)

bus_messages = Table(
    "dwk_bus_messages",
    metadata,
    Column("id", _id(), primary_key=True, autoincrement=True),
    Column("topic", _text(200), nullable=False),
    Column("payload", _blob, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.current_timestamp()),
    Index("dwk_bus_messages_created", "created_at"),
    sqlite_autoincrement=True,
    **_MYSQL,
)

TABLES = [subscriptions, subscribers, event_log, bus_messages]
