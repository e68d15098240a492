"""The tables of the SQL index: one schema for SQLite, PostgreSQL and MariaDB.

* ``studies`` / ``series``: one row per entity, created by the first instance and deleted with
  the last; ``id`` order is first-insertion order (the stable QIDO-RS order). Counters are kept
  in the same transaction as every add/remove. The other columns are the newest instance's
  values (the representative of PS3.18 QIDO-RS results): summary columns; neither matching nor
  ``orderby`` reads them (both use the representative's ``instance_values`` rows, which keep
  exact normalised forms; see ``search.py``). A study row also keeps its newest instance's id
  and its ModalitiesInStudy / SOPClassesInStudy (``study_summary.py``).
* ``instances``: ``id`` is the insertion sequence; ``study_id``/``series_id`` are both kept so
  a study-level ``EXISTS`` needs no join; ``metadata`` holds the record's DICOM JSON bytes as
  given (bytea / BLOB / LONGBLOB); ``pixel_layout`` the record's frame layout as msgpack (version 4).
* ``instance_values``: the match and sort values (``extract.py``), one row per value (per PN group)
  of every indexed attribute, default or operator-configured (``extra_indexed``). A single
  table, rather than fixed columns plus an ``extra_attributes`` table, because the contract is
  "a study matches when ONE instance matches every term" and attributes can be multi-valued:
  every term becomes one correlated ``EXISTS`` on this table, whatever the attribute.

Text that is compared is stored with a binary collation (PostgreSQL ``"C"``, MariaDB
``utf8mb4_nopad_bin``, SQLite ``BINARY``): case-sensitive, code point order, no pad-space.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

from .extract import MAX_TEXT

__all__ = [
    "OLD_VALUE_INDEXES",
    "SERIES_COLUMNS",
    "VALUE_INDEXES",
    "STUDY_COLUMNS",
    "instance_values",
    "instances",
    "metadata",
    "schema_version",
    "series",
    "studies",
    "workitems",
]

metadata = MetaData()

_MYSQL: Final[dict[str, Any]] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_nopad_bin",
}


def _text(length: int = MAX_TEXT) -> TypeEngine[str]:
    return String(length).with_variant(String(length, collation="C"), "postgresql")


def _id() -> TypeEngine[int]:
    return BigInteger().with_variant(Integer(), "sqlite")  # INTEGER PRIMARY KEY is the rowid


_blob: TypeEngine[bytes] = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")

# Representative columns: name -> tag (PS3.18 Table 10.6.1-5 study / -6 series match keys).
STUDY_COLUMNS: Final[dict[str, int]] = {
    "patient_name": 0x00100010,
    "patient_id": 0x00100020,
    "patient_birth_date": 0x00100030,
    "patient_sex": 0x00100040,
    "study_date": 0x00080020,
    "study_time": 0x00080030,
    "accession_number": 0x00080050,
    "study_id_attr": 0x00200010,
    "referring_physician_name": 0x00080090,
    "study_description": 0x00081030,
}
SERIES_COLUMNS: Final[dict[str, int]] = {
    "modality": 0x00080060,
    "series_number": 0x00200011,
    "series_description": 0x0008103E,
    "pps_start_date": 0x00400244,
    "pps_start_time": 0x00400245,
}
_PN_FORMS = (
    "patient_name_alphabetic",
    "patient_name_ideographic",
    "patient_name_phonetic",
    "patient_name_fold",
    "patient_name_fuzzy",
)

# Version 3 indexes of instance_values (all covering for the searches of search.py):
# * "seek": candidates by value (Single Value, UID list, narrow ranges, wild cards with a prefix);
# * "scan": one attribute's values in study (series) order, so that a page of the stable order
#   stops after ``limit`` matching studies (broad ranges, wild cards with a leading ``*``).
VALUE_INDEXES: Final[dict[str, tuple[str, ...]]] = {
    "dwk_values_key_seek": ("tag", "value_key", "study_id", "series_id", "instance_id"),
    "dwk_values_value_seek": ("tag", "value", "study_id", "series_id", "instance_id"),
    "dwk_values_scan": ("tag", "study_id", "series_id", "instance_id", "value_key", "value"),
}
# Version 1-2 indexes that version 3 replaces.
OLD_VALUE_INDEXES: Final[dict[str, tuple[str, ...]]] = {
    "dwk_values_value": ("tag", "value"),
    "dwk_values_key": ("tag", "value_key"),
}

schema_version = Table(
    "dwk_schema_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, nullable=False),
    **_MYSQL,
)

studies = Table(
    "dwk_studies",
    metadata,
    Column("id", _id(), primary_key=True, autoincrement=True),
    Column("study_uid", _text(64), nullable=False, unique=True),
    Column("num_series", Integer, nullable=False, default=0),
    Column("num_instances", Integer, nullable=False, default=0),
    *(Column(name, _text()) for name in STUDY_COLUMNS),
    *(Column(name, _text()) for name in _PN_FORMS),
    # Version 8 (study_summary.py): the newest instance, and the distinct Modality values and
    # SOP Class UIDs of all instances as JSON arrays; NULL: not known, computed when searched.
    Column("representative_id", _id(), nullable=True),
    Column("modalities", Text(), nullable=True),
    Column("sop_classes", Text(), nullable=True),
    sqlite_autoincrement=True,
    **_MYSQL,
)

series = Table(
    "dwk_series",
    metadata,
    Column("id", _id(), primary_key=True, autoincrement=True),
    Column("study_id", _id(), ForeignKey("dwk_studies.id", ondelete="CASCADE"), nullable=False),
    Column("series_uid", _text(64), nullable=False),
    Column("num_instances", Integer, nullable=False, default=0),
    *(Column(name, _text()) for name in SERIES_COLUMNS),
    Index("dwk_series_uid", "series_uid", "study_id", unique=True),
    Index("dwk_series_study", "study_id", "id"),
    sqlite_autoincrement=True,
    **_MYSQL,
)

instances = Table(
    "dwk_instances",
    metadata,
    Column("id", _id(), primary_key=True, autoincrement=True),
    Column("study_id", _id(), ForeignKey("dwk_studies.id", ondelete="CASCADE"), nullable=False),
    Column("series_id", _id(), ForeignKey("dwk_series.id", ondelete="CASCADE"), nullable=False),
    Column("instance_uid", _text(64), nullable=False, unique=True),
    Column("sop_class_uid", _text(64), nullable=False),
    Column("transfer_syntax_uid", _text(64), nullable=False),
    Column("blob_key", String(1024), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("metadata", _blob, nullable=False),
    # Version 4: the record's PixelLayout (msgpack), NULL without pixel data or when stored before.
    Column("pixel_layout", _blob, nullable=True),
    Column("stored_at", DateTime(timezone=True), nullable=False, server_default=func.current_timestamp()),
    Index("dwk_instances_order", "study_id", "series_id", "id"),
    Index("dwk_instances_series", "series_id", "id"),
    Index("dwk_instances_sop_class", "sop_class_uid"),
    Index("dwk_instances_study_sop_class", "study_id", "sop_class_uid"),  # version 3: SOPClassesInStudy
    sqlite_autoincrement=True,
    **_MYSQL,
)

instance_values = Table(
    "dwk_instance_values",
    metadata,
    Column("instance_id", _id(), ForeignKey("dwk_instances.id", ondelete="CASCADE"), nullable=False),
    Column("tag", BigInteger, nullable=False),
    Column("vidx", Integer, nullable=False),
    Column("grp", SmallInteger, nullable=False),
    Column("value", _text()),
    Column("value_key", _text()),
    Column("irregular", Boolean, nullable=False, default=False),
    # The instance's study and series (schema version 3), copied so that a study/series-level
    # search reads one index of this table instead of probing every instance (search.py).
    # Nullable only because version 3 added them to existing tables; always written.
    Column("study_id", _id()),
    Column("series_id", _id()),
    Index("dwk_values_instance", "instance_id", "tag"),
    Index("dwk_values_irregular", "irregular", "tag"),
    *(Index(name, *columns) for name, columns in VALUE_INDEXES.items()),
    **_MYSQL,
)

# Version 5: UPS workitems (PS3.4 Annex CC). ``attributes`` is the workitem's DICOM JSON (the
# Transaction UID is never part of it: PS3.4 §CC.2.1.3 keeps it from every response and query, so
# it has its own column). ``version`` is the optimistic lock: an update succeeds only against the
# version it read (``WHERE version = :read``), so of two concurrent state changes exactly one
# wins. ``state`` is a column so that the common ``ProcedureStepState=SCHEDULED`` search is an
# index scan; every other match key is evaluated on ``attributes`` by the reference matcher.
workitems = Table(
    "dwk_workitems",
    metadata,
    Column("id", _id(), primary_key=True, autoincrement=True),
    Column("workitem_uid", _text(64), nullable=False, unique=True),
    Column("version", Integer, nullable=False),
    Column("state", _text(16), nullable=False),
    Column("transaction_uid", _text(64), nullable=True),
    Column("attributes", _blob, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.current_timestamp()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.current_timestamp()),
    Index("dwk_workitems_state", "state", "id"),
    sqlite_autoincrement=True,
    **_MYSQL,
)

# Every match/summary column is indexed (PS3.18 QIDO-RS match keys, sort keys).
for _name in (*STUDY_COLUMNS, "patient_name_fold", "patient_name_fuzzy"):
    Index(f"dwk_studies_{_name}", studies.c[_name])
for _name in SERIES_COLUMNS:
    Index(f"dwk_series_{_name}", series.c[_name])
