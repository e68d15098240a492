"""SqlIndex benchmark, driving the index directly (no HTTP), next to the memory index.

    python benchmarks/sql_index_benchmark.py                          # 100,000 instances, all engines
    python benchmarks/sql_index_benchmark.py -n 20000 --engines sqlite,postgresql
    python benchmarks/sql_index_benchmark.py --reps 20 --budget 5     # quicker

Builds (once, then reused) an archive of N instances per engine with ``add_many`` in batches of
500: SQLite in ``/tmp/dwk-sqlidx-bench-N.db``, PostgreSQL in schema ``dwk_bench_N`` and MariaDB in
database ``dwk_bench_N`` (the URLs below; override with ``--postgres-url``/``--mariadb-url``). A
partly built archive is resumed. Records are made cheaply from one DICOM JSON template dict.

Layout (deterministic): study 0 holds one 500-instance series; every other study 1-4 series of
3-24 instances; about 1.5 studies per patient, 32 family names (3 of them contain "PATCH"),
study dates 2015-2024, six modalities.

Measured per engine and for ``MemoryIndex`` (the reference):

* the QIDO mix (``index.search`` of the parsed query, p50/p95 over ``--reps`` runs, each query
  capped at ``--budget`` seconds) - target p95 <= 20 ms on SQLite and PostgreSQL;
* ``records()`` of the 500-instance series - target p50 <= 30 ms;
* the fixed cost of a study list on a 5-study archive;
* ingest: instances/s for ``add_many`` batches of 20 and for single ``add`` (fresh database);
* ``add_many`` of 20 CT-like records (~150 attributes each, a STOW request's batch): ms per batch
  into a fresh database, on SQLite beside the machine's limit measured in the same run: the same
  rows (instances, their match values, change feed entries, the study/series rows) written with
  plain ``sqlite3`` ``executemany`` in one ``BEGIN IMMEDIATE`` transaction, rows built beforehand.
  ``--add-many-only`` measures just this.

Every answer is checked against the memory index (same entity keys), so a fast wrong answer
cannot pass.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "adapters")]

from dicomweb_kit_adapters.memory import MemoryIndex  # noqa: E402
from dicomweb_kit_adapters.sql import SqlIndex  # noqa: E402

# The HTTP benchmark's scale archive uses the same names, so both measure the same mix.
from server_benchmark import SCALE_FAMILIES as FAMILIES  # noqa: E402
from server_benchmark import SCALE_GIVEN as GIVEN  # noqa: E402
from server_benchmark import SCALE_MODALITIES as MODALITIES  # noqa: E402

from dicomweb_kit import InstanceRecord, Level, Query, ResourceKey  # noqa: E402
from dicomweb_kit.query.qido_params import parse_qido  # noqa: E402

POSTGRES_URL = os.environ.get("DICOMWEB_KIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("DICOMWEB_KIT_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/test")
BUILD_BATCH = 500
QIDO_P95_MS = 20.0
RECORDS_P50_MS = 30.0
TARGET_ENGINES = ("sqlite", "postgresql")

BIG_SERIES = 500
SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
SYNTAX = "1.2.840.10008.1.2.1"


def _h(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


def uid(*parts: object) -> str:
    return "2.25." + str(_h(*parts) * 1000003 + len(parts))


@dataclass(frozen=True)
class Study:
    index: int
    patient_id: str
    patient_name: str
    date: str
    modality: str
    series_sizes: tuple[int, ...]


class Plan:
    """Deterministic layout of ``total`` instances (see the module docstring)."""

    def __init__(self, total: int, salt: str = "") -> None:
        self.total, self.salt = total, salt
        self.studies: list[Study] = []
        placed, s = 0, 0
        while placed < total:
            sizes = [BIG_SERIES] if s == 0 and not salt else [3 + _h("n", s, r) % 22 for r in range(1 + _h("k", s) % 4)]
            trimmed = []
            for size in sizes:
                size = min(size, total - placed)
                if size <= 0:
                    break
                trimmed.append(size)
                placed += size
            p = s * 2 // 3
            family = FAMILIES[p % len(FAMILIES)] + ("" if p < len(FAMILIES) else str(p // 97 % 10))
            h = _h("d", s)
            self.studies.append(
                Study(
                    s,
                    f"PID{salt}{p:07d}",
                    f"{family}^{GIVEN[_h('g', p) % len(GIVEN)]}",
                    f"{2015 + h % 10}{1 + h // 15 % 12:02d}{1 + h // 180 % 28:02d}",
                    MODALITIES[_h("m", s) % len(MODALITIES)],
                    tuple(trimmed),
                )
            )
            s += 1

    def records(self, start: int = 0) -> Iterator[InstanceRecord]:
        i = 0
        for st in self.studies:
            for r, size in enumerate(st.series_sizes):
                for n in range(size):
                    if i >= start:
                        yield make_record(self.salt, st, r, n, i)
                    i += 1


def _el(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)}


TEMPLATE: dict[str, Any] = {
    "00080005": _el("CS", "ISO_IR 100"),
    "00080016": _el("UI", SOP_CLASS),
    "00080064": _el("CS", "WSD"),
    "00100040": _el("CS", "O"),
    "00280002": _el("US", 1),
    "00280004": _el("CS", "MONOCHROME2"),
    "00280010": _el("US", 8),
    "00280011": _el("US", 8),
    "00280100": _el("US", 16),
    "00280101": _el("US", 12),
    "00280102": _el("US", 11),
    "00280103": _el("US", 0),
}


def make_record(salt: str, st: Study, r: int, n: int, i: int) -> InstanceRecord:
    s = st.index
    study_uid, series_uid, sop_uid = uid("study", salt, s), uid("series", salt, s, r), uid("sop", salt, s, r, n)
    attrs = dict(TEMPLATE)
    attrs.update(
        {
            "00080018": _el("UI", sop_uid),
            "00080020": _el("DA", st.date),
            "00080030": _el("TM", f"{8 + s % 10:02d}{s % 60:02d}00"),
            "00080050": _el("SH", f"SA{salt}{s:08d}"),
            "00080060": _el("CS", st.modality),
            "00081030": _el("LO", f"{st.modality} STUDY {s % 17}"),
            "0008103E": _el("LO", f"SERIES {r + 1}"),
            "00100010": _el("PN", {"Alphabetic": st.patient_name}),
            "00100020": _el("LO", st.patient_id),
            "00100030": _el("DA", f"{1930 + _h('b', st.patient_id) % 70}0101"),
            "00100040": _el("CS", "MFO"[s % 3]),
            "0020000D": _el("UI", study_uid),
            "0020000E": _el("UI", series_uid),
            "00200010": _el("SH", str(s + 1)),
            "00200011": _el("IS", r + 1),
            "00200013": _el("IS", n + 1),
            "7FE00010": {
                "vr": "OW",
                "BulkDataURI": f"studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/bulkdata/7FE00010",
            },
        }
    )
    if s % 3 != 2:
        attrs["00080090"] = _el("PN", {"Alphabetic": ["DOE^JANE", "ROE^RICHARD"][s % 3]})
    return InstanceRecord(
        study_uid=study_uid,
        series_uid=series_uid,
        instance_uid=sop_uid,
        sop_class_uid=SOP_CLASS,
        transfer_syntax_uid=SYNTAX,
        blob_key=f"blob/{i}",
        size=1000 + i % 100,
        metadata=msgspec.Raw(msgspec.json.encode(attrs)),
        attributes=attrs,
    )


# --- queries ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    query: Query


def _query(params: str, level: Level = Level.STUDY, scope: ResourceKey | None = None) -> Query:
    pairs = [tuple(p.split("=", 1)) for p in params.split("&") if p]
    return parse_qido(pairs, level, scope or ResourceKey(), max_limit=1000)  # type: ignore[arg-type]


def query_mix(plan: Plan) -> list[Case]:
    one = plan.studies[1]
    study, series = uid("study", "", 1), uid("series", "", 1, 0)
    return [
        Case("studies limit=25", _query("limit=25")),
        Case("PatientID=<one>", _query(f"PatientID={one.patient_id}")),
        Case("PatientName=*PATCH* limit=25", _query("PatientName=*PATCH*&limit=25")),
        Case("StudyDate=2020-2022 limit=25", _query("StudyDate=20200101-20221231&limit=25")),
        Case("includefield=all limit=25", _query("includefield=all&limit=25")),
        Case("series of a study", _query("", Level.SERIES, ResourceKey(study))),
        Case("instances of a series limit=25", _query("limit=25", Level.INSTANCE, ResourceKey(study, series))),
    ]


# --- engines ------------------------------------------------------------------------------------


async def _admin(url: str, sql: str) -> None:
    from dicomweb_kit_adapters.sql.dialects import create_engine
    from sqlalchemy import text

    _kind, engine = create_engine(url, schema=None, echo=False)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


def _unlink_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def open_index(engine: str, name: str, args: argparse.Namespace, *, fresh: bool = False) -> SqlIndex:
    if engine == "sqlite":
        path = Path(tempfile.gettempdir()) / f"{name}.db"
        if fresh:
            _unlink_db(path)
        index = SqlIndex(f"sqlite:///{path}")
    elif engine == "postgresql":
        if fresh:
            await _admin(args.postgres_url, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await _admin(args.postgres_url, f'CREATE SCHEMA IF NOT EXISTS "{name}"')
        index = SqlIndex(args.postgres_url, schema=name)
    else:
        if fresh:
            await _admin(args.mariadb_url, f"DROP DATABASE IF EXISTS `{name}`")
        await _admin(
            args.mariadb_url, f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"
        )
        index = SqlIndex(args.mariadb_url, schema=name)
    await index.open()
    return index


async def drop(engine: str, name: str, args: argparse.Namespace) -> None:
    if engine == "sqlite":
        _unlink_db(Path(tempfile.gettempdir()) / f"{name}.db")
    elif engine == "postgresql":
        await _admin(args.postgres_url, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    else:
        await _admin(args.mariadb_url, f"DROP DATABASE IF EXISTS `{name}`")


async def stored_count(index: Any) -> int:
    if isinstance(index, MemoryIndex):
        return 0
    from dicomweb_kit_adapters.sql.schema import instances
    from sqlalchemy import func, select

    async with index._engine.connect() as conn:  # benchmark-only peek at the row count
        return int(await conn.scalar(select(func.count()).select_from(instances)) or 0)


async def build(index: Any, plan: Plan, label: str) -> None:
    start = await stored_count(index)
    start -= start % BUILD_BATCH  # a partial batch (only before group commit) is re-added, kept
    if start >= plan.total:
        print(f"  {label}: archive of {plan.total} instances reused", flush=True)
        return
    print(f"  {label}: storing {plan.total - start} instances (from {start}) ...", flush=True)
    t0 = time.perf_counter()
    batch: list[InstanceRecord] = []
    done = 0
    for record in plan.records(start):
        batch.append(record)
        if len(batch) == BUILD_BATCH:
            await index.add_many(batch, on_existing="keep")
            done += len(batch)
            batch = []
            if done % 10_000 == 0:
                print(f"    {start + done} ({done / (time.perf_counter() - t0):.0f}/s)", flush=True)
    if batch:
        await index.add_many(batch, on_existing="keep")
        done += len(batch)
    print(f"  {label}: stored {done} in {time.perf_counter() - t0:.1f} s", flush=True)


# --- measurement --------------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    k = max(0, math.ceil(q * len(ordered)) - 1)
    return ordered[k]


async def timed(action: Callable[[], Any], reps: int, budget: float) -> tuple[list[float], Any]:
    samples: list[float] = []
    result = await action()  # warm-up (statement caches, pages)
    deadline = time.perf_counter() + budget
    for _ in range(reps):
        t0 = time.perf_counter()
        result = await action()
        samples.append((time.perf_counter() - t0) * 1000)
        if time.perf_counter() > deadline and len(samples) >= 3:
            break
    return samples, result


def keys_of(page: Any) -> list[ResourceKey]:
    return [row.key for row in page.rows]


async def collect(scope: ResourceKey, index: Any) -> list[str]:
    out = []
    async for record in index.records(scope):
        out.append(record.instance_uid)
    return out


@dataclass
class Result:
    name: str
    p50: float
    p95: float
    runs: int
    check: str = ""
    reference: Result | None = None  # measured in the same run; printed beside, with the ratio


async def measure(index: Any, plan: Plan, args: argparse.Namespace, reference: dict[str, Any]) -> list[Result]:
    out: list[Result] = []
    for case in query_mix(plan):
        samples, page = await timed(lambda c=case: index.search(c.query), args.reps, args.budget)  # type: ignore[misc]
        answer = (keys_of(page), page.has_more)
        check = ""
        if case.name in reference and reference[case.name] != answer:
            check = "WRONG"
        reference.setdefault(case.name, answer)
        out.append(Result(case.name, percentile(samples, 0.5), percentile(samples, 0.95), len(samples), check))
    scope = ResourceKey(uid("study", "", 0), uid("series", "", 0, 0))
    samples, uids = await timed(lambda: collect(scope, index), args.reps, args.budget)
    check = "" if len(uids) == min(BIG_SERIES, plan.total) else "WRONG"
    name = f"records() {len(uids)}-instance series"
    out.append(Result(name, percentile(samples, 0.5), percentile(samples, 0.95), len(samples), check))
    return out


async def small_and_ingest(engine: str, args: argparse.Namespace) -> list[Result]:
    """Fixed cost on a 5-study archive, then ingest rates into a fresh database."""
    name = f"dwk_bench_ingest_{os.getpid()}"
    index: Any = MemoryIndex() if engine == "memory" else await open_index(engine, name, args, fresh=True)
    out: list[Result] = []
    try:
        tiny = Plan(150, salt="t")
        small = [r for r in tiny.records() if r.study_uid in {uid("study", "t", s) for s in range(5)}]
        await index.add_many(small, on_existing="keep")
        samples, _page = await timed(lambda: index.search(_query("limit=25")), args.reps, args.budget)
        out.append(
            Result("5-study archive: studies", percentile(samples, 0.5), percentile(samples, 0.95), len(samples))
        )
        records = list(Plan(args.ingest, salt="i").records())
        half = len(records) * 2 // 3
        t0 = time.perf_counter()
        for k in range(0, half, 20):
            await index.add_many(records[k : k + 20], on_existing="replace")
        rate = half / (time.perf_counter() - t0)
        out.append(Result("ingest add_many(20) inst/s", rate, rate, half))
        t0 = time.perf_counter()
        for record in records[half:]:
            await index.add(record, on_existing="replace")
        rate = (len(records) - half) / (time.perf_counter() - t0)
        out.append(Result("ingest add() inst/s", rate, rate, len(records) - half))
    finally:
        if engine != "memory":
            await index.aclose()
            await drop(engine, name, args)
    return out


# --- add_many of CT-like batches -----------------------------------------------------------------

ADD_MANY_BATCH = 20
ADD_MANY_WARMUP = 20
CT_ATTRIBUTES = 150
CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"


def _ct_padding() -> dict[str, Any]:
    """Private LO/DS/US elements filling a CT header up to :data:`CT_ATTRIBUTES`."""
    kinds = [("LO", "value text"), ("DS", 1.25), ("US", 512)]
    padding: dict[str, Any] = {"00190010": _el("LO", "SYNTHETIC")}
    for element in range(0x1000, 0x1000 + CT_ATTRIBUTES - 45):
        vr, value = kinds[element % 3]
        padding[f"0019{element:04X}"] = _el(vr, value)
    return padding


CT_PADDING = _ct_padding()


def ct_like_record(salt: str, s: int, r: int, n: int) -> InstanceRecord:
    """An instance of a 512x512 CT series: the plan's attributes, the CT image module, padding."""
    study = Study(s, f"PCT{salt}{s:05d}", "PATCHWORK^QUILT", "20240102", "CT", (100,))
    base = make_record(salt, study, r, n, s * 1000 + r * 100 + n)
    attrs = dict(base.attributes)
    attrs.update(CT_PADDING)
    attrs.update(
        {
            "00080008": _el("CS", "ORIGINAL", "PRIMARY", "AXIAL"),
            "00080016": _el("UI", CT_SOP_CLASS),
            "00080021": _el("DA", "20240102"),
            "00080031": _el("TM", "101500"),
            "00080070": _el("LO", "ACME MEDICAL"),
            "00080080": _el("LO", "General Hospital"),
            "00081090": _el("LO", "SCANNER 9000"),
            "00180015": _el("CS", "CHEST"),
            "00180050": _el("DS", 5.0),
            "00180060": _el("DS", 120),
            "00181150": _el("IS", 500),
            "00181151": _el("IS", 300),
            "00181152": _el("IS", 150),
            "00185100": _el("CS", "HFS"),
            "00200032": _el("DS", -180.0, -180.0, 12.5 + 5 * n),
            "00200037": _el("DS", 1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
            "00201041": _el("DS", 12.5 + 5 * n),
            "00280010": _el("US", 512),
            "00280011": _el("US", 512),
            "00280030": _el("DS", 0.703125, 0.703125),
            "00281050": _el("DS", 40, 400),
            "00281051": _el("DS", 400, 1500),
            "00281052": _el("DS", -1024),
            "00281053": _el("DS", 1),
        }
    )
    return msgspec.structs.replace(
        base,
        sop_class_uid=CT_SOP_CLASS,
        size=512 * 512 * 2 + 2000,
        metadata=msgspec.Raw(msgspec.json.encode(attrs)),
        attributes=attrs,
    )


def ct_like_batches(count: int, salt: str) -> list[list[InstanceRecord]]:
    """``count`` batches of :data:`ADD_MANY_BATCH` instances: 100-instance series, 4 per study."""
    per_series = 100 // ADD_MANY_BATCH
    return [
        [
            ct_like_record(salt, b // (4 * per_series), b // per_series % 4, b % per_series * ADD_MANY_BATCH + k)
            for k in range(ADD_MANY_BATCH)
        ]
        for b in range(count)
    ]


async def add_many_ms(engine: str, args: argparse.Namespace) -> Result:
    """ms per ``add_many`` of a CT-like batch into a fresh database; on SQLite beside the raw limit."""
    name = f"dwk_bench_add_many_{os.getpid()}"
    index: Any = MemoryIndex() if engine == "memory" else await open_index(engine, name, args, fresh=True)
    batches = ct_like_batches(ADD_MANY_WARMUP + args.add_many_batches, salt="a")
    samples: list[float] = []
    try:
        for n, batch in enumerate(batches):
            t0 = time.perf_counter()
            outcomes = await index.add_many(batch, on_existing="keep")
            if n >= ADD_MANY_WARMUP:
                samples.append((time.perf_counter() - t0) * 1000)
            assert all(outcome.stored for outcome in outcomes)
    finally:
        if engine != "memory":
            await index.aclose()
            await drop(engine, name, args)
    result = Result(
        f"add_many({ADD_MANY_BATCH} CT-like) ms/batch",
        percentile(samples, 0.5),
        percentile(samples, 0.95),
        len(samples),
    )
    if engine == "sqlite":
        raw = await raw_sqlite_ms(batches)
        result.reference = Result("raw sqlite3 executemany", percentile(raw, 0.5), percentile(raw, 0.95), len(raw))
    return result


# As the index sets them on its connections (sql/dialects.py).
_INDEX_PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=NORMAL",
    "foreign_keys=ON",
    "cache_size=-65536",
    "mmap_size=268435456",
    "temp_store=MEMORY",
)
_RAW_INSERTS = {
    "instances": "INSERT INTO dwk_instances (id, study_id, series_id, instance_uid, sop_class_uid, transfer_syntax_uid,"
    " blob_key, size, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "values": "INSERT INTO dwk_instance_values (instance_id, tag, vidx, grp, value, value_key, irregular, study_id,"
    " series_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "feed": "INSERT INTO dwk_changefeed (seq, at_us, action, study_uid, series_uid, instance_uid, modality, version)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
}


async def raw_sqlite_ms(batches: list[list[InstanceRecord]]) -> list[float]:
    """The machine's limit for :func:`add_many_ms`: the same rows into the same schema (and the
    index's pragmas) with ``sqlite3`` alone, one ``BEGIN IMMEDIATE`` transaction per batch, rows
    built beforehand: the database's own work, without any per-row Python."""
    import sqlite3

    path = Path(tempfile.gettempdir()) / f"dwk-raw-add-many-{os.getpid()}.db"
    _unlink_db(path)
    index = SqlIndex(f"sqlite:///{path}")
    await index.open()  # the schema
    await index.aclose()
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in _INDEX_PRAGMAS:
        db.execute(f"PRAGMA {pragma}")
    samples: list[float] = []
    ids: dict[str, int] = {}  # study and series UIDs
    try:
        for n, batch in enumerate(batches):
            first = batch[0]
            new_study, new_series = first.study_uid not in ids, first.series_uid not in ids
            study_id = ids.setdefault(first.study_uid, len(ids) + 1)
            series_id = ids.setdefault(first.series_uid, len(ids) + 1)
            rows = _raw_rows(batch, n * ADD_MANY_BATCH, study_id, series_id)
            t0 = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            if new_study:
                db.execute("INSERT INTO dwk_studies (id, study_uid, num_series, num_instances) VALUES (?, ?, 1, 0)",
                           (study_id, first.study_uid))  # fmt: skip
            if new_series:
                db.execute("INSERT INTO dwk_series (id, study_id, series_uid, num_instances) VALUES (?, ?, ?, 0)",
                           (series_id, study_id, first.series_uid))  # fmt: skip
            for table, sql in _RAW_INSERTS.items():
                db.executemany(sql, rows[table])
            for sql, params in rows["updates"]:
                db.execute(sql, params)
            db.execute("UPDATE dwk_changefeed_head SET seq = ? WHERE id = 1", ((n + 1) * ADD_MANY_BATCH,))
            db.execute("COMMIT")
            if n >= ADD_MANY_WARMUP:
                samples.append((time.perf_counter() - t0) * 1000)
    finally:
        db.close()
        _unlink_db(path)
    return samples


def _raw_rows(batch: list[InstanceRecord], before: int, study_id: int, series_id: int) -> dict[str, list[Any]]:
    from dicomweb_kit_adapters.sql.extract import indexed_attributes, representative, value_rows
    from dicomweb_kit_adapters.sql.schema import SERIES_COLUMNS, STUDY_COLUMNS

    indexed = indexed_attributes(())
    rows: dict[str, list[Any]] = {"instances": [], "values": [], "feed": [], "updates": []}
    for table, entity, columns in (("dwk_series", series_id, SERIES_COLUMNS), ("dwk_studies", study_id, STUDY_COLUMNS)):
        summary = representative(batch[-1].attributes, columns)  # the counter and the newest instance's columns
        sets = ", ".join(f"{column} = ?" for column in summary)
        sql = f"UPDATE {table} SET num_instances = num_instances + ?, {sets} WHERE id = ?"
        rows["updates"].append((sql, (len(batch), *summary.values(), entity)))
    for k, record in enumerate(batch):
        n = before + k + 1  # the instance's id and change feed sequence
        rows["instances"].append(
            (n, study_id, series_id, record.instance_uid, record.sop_class_uid, record.transfer_syntax_uid,
             record.blob_key, record.size, bytes(record.metadata))
        )  # fmt: skip
        rows["values"] += [(n, *value, study_id, series_id) for value in value_rows(record.attributes, indexed)]
        rows["feed"].append((n, 0, "create", record.study_uid, record.series_uid, record.instance_uid, "CT", n))
    return rows


def verdict(engine: str, res: Result) -> str:
    if res.check:
        return res.check
    if res.name.startswith("records()"):
        return "PASS" if res.p50 <= RECORDS_P50_MS else "FAIL"
    if res.name.startswith(("ingest", "5-study", "add_many")):
        return ""
    if engine not in TARGET_ENGINES:
        return "(no target)"
    return "PASS" if res.p95 <= QIDO_P95_MS else "FAIL"


def print_table(engine: str, results: list[Result], memory: dict[str, Result]) -> None:
    print(f"\n== {engine} ==")
    print(f"{'measure':40} {'p50 ms':>9} {'p95 ms':>9} {'runs':>5} {'ref p50':>9} {'x ref':>7}  verdict")
    for res in results:
        if res.reference is not None:
            ref = res.reference
            print(f"{res.name:40} {res.p50:9.2f} {res.p95:9.2f} {res.runs:5d} {ref.p50:9.2f} {res.p50 / ref.p50:7.2f}"
                  f"  (ref: {ref.name}, same rows)")  # fmt: skip
            continue
        ref = memory.get(res.name)
        if res.name.startswith("ingest"):
            ratio = f"{res.p50 / ref.p50:7.3f}" if ref else ""
            print(f"{res.name:40} {res.p50:9.0f} {'':>9} {res.runs:5d} {ref.p50 if ref else 0:9.0f} {ratio}")
            continue
        ratio = f"{res.p50 / ref.p50:7.1f}" if ref and ref.p50 > 0 else ""
        mem = f"{ref.p50:9.2f}" if ref else ""
        print(f"{res.name:40} {res.p50:9.2f} {res.p95:9.2f} {res.runs:5d} {mem:>9} {ratio:>7}  {verdict(engine, res)}")


async def run(args: argparse.Namespace) -> int:
    if args.add_many_only:
        tables = {engine: [await add_many_ms(engine, args)] for engine in ["memory", *args.engines]}
        for engine, results in tables.items():
            print_table(engine, results, {})
        return 0
    plan = Plan(args.n)
    print(f"{args.n} instances in {len(plan.studies)} studies, {sum(len(s.series_sizes) for s in plan.studies)} series")
    reference: dict[str, Any] = {}
    tables: dict[str, list[Result]] = {}
    for engine in ["memory", *args.engines]:
        print(f"{engine}:", flush=True)
        if engine == "memory":
            index: Any = MemoryIndex()
        else:
            index = await open_index(
                engine, f"dwk_bench_{args.n}" if engine != "sqlite" else f"dwk-sqlidx-bench-{args.n}", args
            )
        try:
            await build(index, plan, engine)
            results = await measure(index, plan, args, reference)
        finally:
            if engine != "memory":
                await index.aclose()
        if not args.no_ingest:
            results += await small_and_ingest(engine, args)
            results.append(await add_many_ms(engine, args))
        tables[engine] = results
    memory = {r.name: r for r in tables["memory"]}
    print("\n(ref: the same measure on MemoryIndex, unless the row names another)")
    for engine, results in tables.items():
        print_table(engine, results, memory)
    failed = any(verdict(e, r) in ("FAIL", "WRONG") for e, rs in tables.items() for r in rs if e != "memory")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100_000, help="instances in the archive (default 100000)")
    parser.add_argument("--engines", default="sqlite,postgresql,mariadb", help="comma-separated engines")
    parser.add_argument("--reps", type=int, default=50, help="timed runs per query (default 50)")
    parser.add_argument("--budget", type=float, default=15.0, help="seconds per query before stopping early")
    parser.add_argument("--ingest", type=int, default=1500, help="instances for the ingest rates")
    parser.add_argument("--no-ingest", action="store_true", help="skip the 5-study, ingest and add_many measurements")
    parser.add_argument("--add-many-only", action="store_true", help="measure only add_many of CT-like batches")
    parser.add_argument("--add-many-batches", type=int, default=200, help="timed add_many batches (default 200)")
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--mariadb-url", default=MARIADB_URL)
    args = parser.parse_args(argv)
    args.engines = [e for e in args.engines.split(",") if e]
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
