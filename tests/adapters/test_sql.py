"""SqlIndex on SQLite, PostgreSQL and MariaDB: the contract suite, a property test against the
reference matcher, concurrency, and the answers given from stored metadata.

PostgreSQL and MariaDB run against real servers (``DICOMWEB_KIT_TEST_POSTGRES_URL``,
``DICOMWEB_KIT_TEST_MARIADB_URL``); each test gets its own schema / database, dropped after.
An unreachable server skips its tests, except under ``CI=true``, where it fails them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from dicomweb_kit_adapters.sql import SqlIndex
from dicomweb_kit_adapters.sql.dialects import create_engine
from dicomweb_kit_adapters.sql.migrations import SCHEMA_VERSION
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from dicomweb_kit import (
    InstanceRecord,
    Level,
    Query,
    ResourceKey,
    StorageUnavailable,
    Term,
    instance_matches,
    sort_key,
)
from dicomweb_kit.query.qido_params import parse_qido
from dicomweb_kit.testing import InstanceIndexContract, make_dataset, make_record

pytestmark = pytest.mark.anyio

POSTGRES_URL = os.environ.get("DICOMWEB_KIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("DICOMWEB_KIT_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/test")


def _unreachable(engine: str, err: BaseException) -> None:
    reason = f"{engine} server not reachable: {type(err).__name__}: {err}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


async def _admin(url: str, sql: str) -> None:
    _kind, engine = create_engine(url, schema=None, echo=False)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


_reachable: dict[str, BaseException | None] = {}


async def _check(engine: str, url: str) -> None:
    if engine not in _reachable:
        try:
            with anyio.fail_after(10):
                await _admin(url, "SELECT 1")
            _reachable[engine] = None
        except Exception as failure:  # any failure to connect
            _reachable[engine] = failure
    found = _reachable[engine]
    if found is not None:
        _unreachable(engine, found)


async def sqlite_index(tmp_path: Path, **kw: Any) -> AsyncIterator[SqlIndex]:
    index = SqlIndex(f"sqlite:///{tmp_path / 'index.db'}", **kw)
    await index.open()
    try:
        yield index
    finally:
        await index.aclose()


async def postgres_index(_tmp_path: Path, **kw: Any) -> AsyncIterator[SqlIndex]:
    await _check("PostgreSQL", POSTGRES_URL)
    schema = f"dwk_{uuid.uuid4().hex[:12]}"
    await _admin(POSTGRES_URL, f'CREATE SCHEMA "{schema}"')
    index = SqlIndex(POSTGRES_URL, schema=schema, **kw)
    try:
        await index.open()
        yield index
    finally:
        await index.aclose()
        await _admin(POSTGRES_URL, f'DROP SCHEMA "{schema}" CASCADE')


async def mariadb_index(_tmp_path: Path, **kw: Any) -> AsyncIterator[SqlIndex]:
    await _check("MariaDB", MARIADB_URL)
    database = f"dwk_{uuid.uuid4().hex[:12]}"
    await _admin(MARIADB_URL, f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin")
    index = SqlIndex(MARIADB_URL, schema=database, **kw)
    try:
        await index.open()
        yield index
    finally:
        await index.aclose()
        await _admin(MARIADB_URL, f"DROP DATABASE `{database}`")


Factory = Callable[..., AsyncIterator[SqlIndex]]
ENGINES: dict[str, Factory] = {"sqlite": sqlite_index, "postgresql": postgres_index, "mariadb": mariadb_index}


class TestSqliteIndex(InstanceIndexContract):
    @pytest.fixture
    async def instance_index(self, tmp_path: Path) -> AsyncIterator[SqlIndex]:
        async for index in sqlite_index(tmp_path):
            yield index


class TestPostgresIndex(InstanceIndexContract):
    @pytest.fixture
    async def instance_index(self, tmp_path: Path) -> AsyncIterator[SqlIndex]:
        async for index in postgres_index(tmp_path):
            yield index


class TestMariadbIndex(InstanceIndexContract):
    @pytest.fixture
    async def instance_index(self, tmp_path: Path) -> AsyncIterator[SqlIndex]:
        async for index in mariadb_index(tmp_path):
            yield index


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def index(engine: str, tmp_path: Path) -> AsyncIterator[SqlIndex]:
    async for made in ENGINES[engine](tmp_path, extra_indexed=["BodyPartExamined"]):
        yield made


def _record(study: str, series: str, instance: str, **attributes: Any) -> InstanceRecord:
    return make_record(
        make_dataset(study=study, series=series, instance=instance, **attributes), blob_key=f"blob-{instance}"
    )


def _entity(record: InstanceRecord, level: Level) -> ResourceKey:
    if level == Level.STUDY:
        return ResourceKey(record.study_uid)
    if level == Level.SERIES:
        return ResourceKey(record.study_uid, record.series_uid)
    return record.key


def reference_keys(records: list[InstanceRecord], query: Query) -> list[ResourceKey]:
    """The reference answer: entities in first-insertion order (study, then series, then
    instance) of which ONE instance matches every term, sorted (stably) by ``query.orderby``
    with the shared sort key of each entity's newest instance."""
    studies: dict[str, dict[str, list[InstanceRecord]]] = {}
    for record in records:
        studies.setdefault(record.study_uid, {}).setdefault(record.series_uid, []).append(record)
    ordered = [r for series in studies.values() for rs in series.values() for r in rs]
    keys: list[ResourceKey] = []
    newest: dict[ResourceKey, InstanceRecord] = {}
    for record in ordered:
        key = _entity(record, query.level)
        if key not in newest or records.index(record) > records.index(newest[key]):
            newest[key] = record
        if key not in keys and instance_matches(query.terms, record.attributes, fuzzy=query.fuzzy):
            keys.append(key)
    return sorted(keys, key=lambda key: sort_key(newest[key].attributes, query.orderby))


# --------------------------------------------------------------------------------------------
# Property test: SQL answers == reference matcher answers
# --------------------------------------------------------------------------------------------

_NAMES = [
    "Smith^John",
    "SMITH^JOHN^^Dr",
    "Müller^Jürgen",
    "MULLER^JURGEN",
    "O'Brien^Ann Marie",
    "de la Cruz^María",
    "100%^Pure_Name",
    "a_b^c%d",
    "Yamada^Tarou=山田^太郎=やまだ^たろう",
    "Straße^Björk",
    "Lee",
]
_NAME_QUERIES = [
    "smith",
    "Smith^John",
    "SMITH*",
    "*john*",
    "m?ller*",
    "mul",
    "jur",
    "muller^jurg",
    "*%*",
    "*_*",
    "100%*",
    "a_b*",
    "a?b^c%d",
    "山田*",
    "=山田^太郎",
    "yamada=山田*",
    "*^ann*",
    "ann",
    "ann marie",
    "de la*",
    "cruz",
    "strasse",
    "björk",
    "lee",
    "*",
    "?ee",
    "Sm?th^*",
    "^john",
]
_MODALITIES = ["CT", "MR", "US", "PT"]
_DATES = ["20190101", "20200615", "20201231", "20210301", "20230704"]
_TIMES = ["0830", "101500", "235959.5", "12"]
_DESCRIPTIONS = ["AXIAL", "SAG T1", "COR_50%", "axial", "Ünïcode 名前", "50%_off"]

_instance = st.fixed_dictionaries(
    {
        "patient_name": st.sampled_from(_NAMES),
        "modality": st.sampled_from(_MODALITIES),
        "study_date": st.sampled_from(_DATES),
        "StudyTime": st.sampled_from(_TIMES),
        "SeriesDescription": st.sampled_from(_DESCRIPTIONS),
        "ImageType": st.lists(st.sampled_from(["ORIGINAL", "PRIMARY", "AXIAL", "DERIVED"]), min_size=1, max_size=3),
        "BodyPartExamined": st.sampled_from(["HEAD", "CHEST", "HEAD_NECK"]),
        "SeriesNumber": st.sampled_from([1, 2, 10, -4, ""]),
        "SliceThickness": st.sampled_from(["0.5", "10", "2.50", ""]),
        "study": st.integers(0, 2),
        "series": st.integers(0, 1),
    }
)


def _query_params() -> st.SearchStrategy[list[tuple[str, str]]]:
    single = st.one_of(
        st.tuples(st.just("PatientName"), st.sampled_from(_NAME_QUERIES)),
        st.tuples(st.just("Modality"), st.sampled_from([*_MODALITIES, "C?", "*T", "M*"])),
        st.tuples(st.just("ModalitiesInStudy"), st.sampled_from(_MODALITIES)),
        st.tuples(
            st.just("StudyDate"),
            st.sampled_from(["20200101-20201231", "-20200615", "20210101-", "20200615", "20200101-20200101"]),
        ),
        st.tuples(st.just("StudyTime"), st.sampled_from(["08-10", "10", "1015", "-0900", "2359-"])),
        st.tuples(st.just("SeriesDescription"), st.sampled_from(["*%*", "*_*", "AXIAL", "axial", "*T1", "?O*"])),
        st.tuples(st.just("ImageType"), st.sampled_from(["AXIAL", "PRIMARY", "DERIV*"])),
        st.tuples(st.just("BodyPartExamined"), st.sampled_from(["HEAD", "HEAD_*", "*_NECK"])),
        st.tuples(st.just("StudyInstanceUID"), st.sampled_from(["1.2.9.0", "1.2.9.1\\1.2.9.2", "1.2.9.7"])),
        st.tuples(st.just("SeriesNumber"), st.sampled_from(["1", "+01", "2"])),
    )
    return st.lists(single, min_size=0, max_size=3, unique_by=lambda p: p[0])


# "" (stable order), keys sorted in SQL (indexed), and keys sorted from metadata (not indexed:
# ImageType, SliceThickness); BodyPartExamined is an extra_indexed attribute.
_ORDERS = [
    "",
    "PatientName",
    "-StudyDate,StudyTime",
    "-SeriesNumber,-PatientName",
    "BodyPartExamined,-SeriesDescription",
    "-SeriesDescription",
    "ImageType",
    "-SliceThickness,Modality",
]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    archive=st.lists(_instance, min_size=1, max_size=8),
    params=_query_params(),
    fuzzy=st.booleans(),
    page=st.sampled_from([(None, 0), (2, 0), (2, 1), (1, 3)]),
    orderby=st.sampled_from(_ORDERS),
)
async def test_search_equals_the_reference_matcher(
    index: SqlIndex,
    archive: list[dict[str, Any]],
    params: list[tuple[str, str]],
    fuzzy: bool,
    page: tuple[int | None, int],
    orderby: str,
) -> None:
    await index.remove(ResourceKey())
    records = []
    for n, spec in enumerate(archive):
        attrs = dict(spec)
        study, series = attrs.pop("study"), attrs.pop("series")
        uid = f"1.2.9.{study}"
        records.append(_record(uid, f"{uid}.{series}", f"{uid}.{series}.{n}", **attrs))
    for record in records:
        await index.add(record, on_existing="keep")
    limit, offset = page
    extra = [("fuzzymatching", "true")] if fuzzy else []
    if limit is not None:
        extra += [("limit", str(limit))]
    extra += [("offset", str(offset))]
    if orderby:
        extra += [("orderby", orderby)]
    for level in Level:
        query = parse_qido(params + extra, level, ResourceKey(), max_limit=10_000)
        expected = reference_keys(records, query)
        result = await index.search(query)
        window = expected[offset:] if limit is None else expected[offset : offset + limit]
        assert [row.key for row in result.rows] == window, (params, fuzzy, level, page, orderby)
        assert result.has_more == (limit is not None and len(expected) > offset + limit)


async def test_every_person_name_query_agrees(index: SqlIndex) -> None:
    """All name queries × fuzzy × level on one archive of all names (PS3.4 §C.2.2.2.1, §C.2.2.2.4)."""
    records = [
        _record(f"1.2.4.{n % 4}", f"1.2.4.{n % 4}.{n % 2}", f"1.2.4.{n % 4}.{n % 2}.{n}", patient_name=name)
        for n, name in enumerate(_NAMES)
    ]
    for record in records:
        await index.add(record, on_existing="keep")
    for value in _NAME_QUERIES:
        for fuzzy in ("false", "true"):
            for level in Level:
                query = parse_qido([("PatientName", value), ("fuzzymatching", fuzzy)], level, ResourceKey())
                got = [row.key for row in (await index.search(query)).rows]
                assert got == reference_keys(records, query), (value, fuzzy, level)


# --------------------------------------------------------------------------------------------
# Concurrency
# --------------------------------------------------------------------------------------------

STUDY = "1.2.826.0.1.3680043.10.77"


async def test_concurrent_adds_of_one_study(index: SqlIndex) -> None:
    modalities = ["CT", "MR", "US", "PT"]  # one per task: a lost update of the study's values shows
    per_task = [
        [_record(STUDY, f"{STUDY}.{t}", f"{STUDY}.{t}.{i}", modality=modalities[t]) for i in range(25)]
        for t in range(4)
    ]

    async def add_all(records: list[InstanceRecord]) -> None:
        for record in records + records[:5]:  # with duplicates of its own
            await index.add(record, on_existing="keep")

    async with anyio.create_task_group() as tg:
        for records in per_task:
            tg.start_soon(add_all, records)
        tg.start_soon(add_all, per_task[0][:10])  # duplicates racing the originals
    page = await index.search(parse_qido([], Level.STUDY, ResourceKey()))
    assert [(row.study_series, row.study_instances) for row in page.rows] == [(4, 100)]
    assert page.rows[0].modalities_in_study == tuple(sorted(modalities))
    series = await index.search(parse_qido([], Level.SERIES, ResourceKey(STUDY)))
    assert [row.series_instances for row in series.rows] == [25, 25, 25, 25]
    assert len([r async for r in index.records(ResourceKey(STUDY))]) == 100


async def test_concurrent_replace(index: SqlIndex) -> None:
    originals = [_record(STUDY, f"{STUDY}.1", f"{STUDY}.1.{i}") for i in range(10)]
    for record in originals:
        await index.add(record, on_existing="keep")
    # Every instance replaced three times concurrently, moving half of them to a new series.
    replacements = [
        _record(STUDY, f"{STUDY}.{1 + (i % 2) * (n % 2)}", f"{STUDY}.1.{i}") for n in range(3) for i in range(10)
    ]
    outcomes = []

    async def replace(record: InstanceRecord) -> None:
        outcomes.append(await index.add(record, on_existing="replace"))

    async with anyio.create_task_group() as tg:
        for record in replacements:
            tg.start_soon(replace, record)
    assert all(outcome.stored and outcome.previous is not None for outcome in outcomes)
    stored = [r async for r in index.records(ResourceKey(STUDY))]
    assert sorted(r.instance_uid for r in stored) == sorted(r.instance_uid for r in originals)
    page = await index.search(parse_qido([], Level.STUDY, ResourceKey()))
    by_series: dict[str, int] = {}
    for record in stored:
        by_series[record.series_uid] = by_series.get(record.series_uid, 0) + 1
    assert [(row.study_series, row.study_instances) for row in page.rows] == [(len(by_series), 10)]
    series = await index.search(parse_qido([], Level.SERIES, ResourceKey(STUDY)))
    assert {row.key.series: row.series_instances for row in series.rows} == by_series


# --------------------------------------------------------------------------------------------
# Answered from stored metadata
# --------------------------------------------------------------------------------------------


async def test_unindexed_attribute_and_sequence_matching(index: SqlIndex) -> None:
    from pydicom.dataset import Dataset

    def item(code: str) -> Dataset:
        ds = Dataset()
        ds.CodeValue, ds.CodingSchemeDesignator = code, "DCM"
        return ds

    records = [
        _record("1.2.5.1", "1.2.5.1.1", "1.2.5.1.1.1", InstitutionName="General_Hospital", ProcedureCodeSequence=[]),
        _record("1.2.5.2", "1.2.5.2.1", "1.2.5.2.1.1", InstitutionName="Clinic", ProcedureCodeSequence=[item("A1")]),
        _record(
            "1.2.5.3",
            "1.2.5.3.1",
            "1.2.5.3.1.1",
            InstitutionName="General Hospital",
            ProcedureCodeSequence=[item("B2"), item("A1")],
        ),
    ]
    for record in records:
        await index.add(record, on_existing="keep")
    queries = [
        [("InstitutionName", "General_*")],
        [("InstitutionName", "General?Hospital")],
        [("ProcedureCodeSequence.CodeValue", "A1")],
        [("ProcedureCodeSequence.CodeValue", "A1"), ("ProcedureCodeSequence.CodingSchemeDesignator", "DCM")],
        [("ProcedureCodeSequence.CodeValue", "B*"), ("PatientName", "doe*")],
        [("InstitutionName", "Clinic"), ("limit", "1"), ("offset", "0")],
    ]
    for params in queries:
        for level in Level:
            query = parse_qido(params, level, ResourceKey())
            assert [r.key for r in (await index.search(query)).rows] == reference_keys(records, query), params


async def test_irregular_values_are_answered_from_metadata(index: SqlIndex) -> None:
    long_description = "LONG " * 100  # beyond the indexed length
    records = [
        _record("1.2.6.1", "1.2.6.1.1", "1.2.6.1.1.1", SeriesDescription=long_description),
        _record("1.2.6.2", "1.2.6.2.1", "1.2.6.2.1.1", SeriesDescription="SHORT"),
    ]
    for record in records:
        await index.add(record, on_existing="keep")
    for pattern in ("LONG*", "*LONG", "SHORT", "*"):
        query = parse_qido([("SeriesDescription", pattern)], Level.SERIES, ResourceKey())
        assert [r.key for r in (await index.search(query)).rows] == reference_keys(records, query), pattern


async def test_extra_indexed_and_reindex(index: SqlIndex) -> None:
    records = [_record("1.2.7.1", "1.2.7.1.1", f"1.2.7.1.1.{i}", BodyPartExamined=f"PART{i}") for i in range(3)]
    for record in records:
        await index.add(record, on_existing="keep")
    assert await index.reindex() == 3
    query = parse_qido([("BodyPartExamined", "PART1")], Level.INSTANCE, ResourceKey())
    assert [r.key for r in (await index.search(query)).rows] == [records[1].key]


async def test_remove_keeps_the_representative_and_counts(index: SqlIndex) -> None:
    a = _record(STUDY, f"{STUDY}.1", f"{STUDY}.1.1", patient_name="First^Name")
    b = _record(STUDY, f"{STUDY}.2", f"{STUDY}.2.1", patient_name="Second^Name")
    for record in (a, b):
        await index.add(record, on_existing="keep")
    page = await index.search(parse_qido([], Level.STUDY, ResourceKey()))
    assert page.rows[0].attributes["00100010"]["Value"][0]["Alphabetic"] == "Second^Name"
    assert await index.remove(ResourceKey(STUDY, f"{STUDY}.2")) == [f"blob-{STUDY}.2.1"]
    page = await index.search(parse_qido([], Level.STUDY, ResourceKey()))
    assert page.rows[0].attributes["00100010"]["Value"][0]["Alphabetic"] == "First^Name"
    assert (page.rows[0].study_series, page.rows[0].study_instances) == (1, 1)
    assert await index.remove(ResourceKey(STUDY)) == [f"blob-{STUDY}.1.1"]
    assert (await index.search(parse_qido([], Level.STUDY, ResourceKey()))).rows == []


async def test_open_is_idempotent_and_concurrent(index: SqlIndex) -> None:
    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(index.open)
    await index.open()


async def test_hand_built_terms_fall_back_to_metadata(index: SqlIndex) -> None:
    from dicomweb_kit import RangeMatch, UidList

    records = [_record("1.2.8.1", "1.2.8.1.1", "1.2.8.1.1.1", AccessionNumber="ACC-5")]
    await index.add(records[0], on_existing="keep")
    terms = (
        Term(0x00080050, "SH", RangeMatch("ACC-1", "ACC-9")),
        Term(0x00080050, "SH", UidList(("ACC-5",))),
    )
    for term in terms:
        query = Query(level=Level.STUDY, terms=(term,))
        assert [r.key for r in (await index.search(query)).rows] == reference_keys(records, query)


# --------------------------------------------------------------------------------------------
# orderby: in SQL, from stored metadata, and the number keys of schema version 2
# --------------------------------------------------------------------------------------------


async def _orderby_archive(index: SqlIndex) -> list[InstanceRecord]:
    specs: list[dict[str, Any]] = [
        {"SeriesNumber": 9, "SeriesDescription": "beta", "BodyPartExamined": "HEAD", "InstitutionName": "b"},
        {"SeriesNumber": 10, "SeriesDescription": "Alpha", "BodyPartExamined": "CHEST", "InstitutionName": "A"},
        {"SeriesNumber": "", "SeriesDescription": "", "BodyPartExamined": "", "InstitutionName": ""},
        {"SeriesNumber": -3, "SeriesDescription": "LONG " * 100, "BodyPartExamined": "ABDOMEN"},
        {"SeriesNumber": 100, "SeriesDescription": "Ärger", "BodyPartExamined": "HEAD", "InstitutionName": "ä"},
    ]
    records = [_record("1.2.30.1", f"1.2.30.1.{n}", f"1.2.30.1.{n}.1", **spec) for n, spec in enumerate(specs)]
    for record in records:
        await index.add(record, on_existing="keep")
    return records


async def test_orderby_in_sql_and_from_metadata(index: SqlIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    from dicomweb_kit_adapters.sql import search

    records = await _orderby_archive(index)
    in_python: list[Any] = []
    real = search._ordered_in_python

    def spy(*args: Any) -> list[int]:
        in_python.append(args[3])
        return real(*args)

    monkeypatch.setattr(search, "_ordered_in_python", spy)
    cases = [
        ("-SeriesNumber", False),  # indexed numbers: SQL
        ("BodyPartExamined,-SeriesNumber", False),  # extra_indexed: SQL
        ("-InstitutionName", True),  # not indexed: stored metadata
        ("SeriesDescription", True),  # an irregular (too long) value: stored metadata
    ]
    for order, from_metadata in cases:
        for params in ([], [("PatientID", "PID-1")], [("BodyPartExamined", "HEAD")]):
            for limit, offset in ((None, 0), (2, 1)):
                in_python.clear()
                paging = [("limit", str(limit)), ("offset", str(offset))] if limit else []
                query = parse_qido([*params, ("orderby", order), *paging], Level.SERIES, ResourceKey())
                expected = reference_keys(records, query)
                window = expected[offset:] if limit is None else expected[offset : offset + limit]
                result = await index.search(query)
                assert [row.key for row in result.rows] == window, (order, params, limit)
                assert result.has_more == (limit is not None and len(expected) > offset + limit)
                assert bool(in_python) == from_metadata, order
    # Terms answered from stored metadata sort from it too.
    query = parse_qido([("InstitutionName", "?"), ("orderby", "-SeriesNumber")], Level.SERIES, ResourceKey())
    assert [row.key for row in (await index.search(query)).rows] == reference_keys(records, query)
    by_number = parse_qido([("orderby", "SeriesNumber")], Level.SERIES, ResourceKey())
    assert [row.key.series for row in (await index.search(by_number)).rows] == [
        f"1.2.30.1.{n}" for n in (3, 0, 1, 4, 2)
    ]


async def test_orderby_limit_zero_and_scope(index: SqlIndex) -> None:
    records = await _orderby_archive(index)
    query = parse_qido([("orderby", "-SeriesNumber"), ("limit", "0")], Level.SERIES, ResourceKey("1.2.30.1"))
    page = await index.search(query)
    assert (page.rows, page.has_more) == ([], True)
    query = parse_qido([("orderby", "-SeriesNumber")], Level.INSTANCE, ResourceKey("1.2.30.1", "1.2.30.1.1"))
    assert [row.key for row in (await index.search(query)).rows] == [records[1].key]


def _version_1_number_key(value: Any) -> str | None:
    """``number_key`` as schema version 1 stored it: canonical, but not ordered."""
    from decimal import Decimal

    number = Decimal(str(value).strip())
    if number == 0:
        return "0"
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits)).lstrip("0")
    stripped = text.rstrip("0")
    exponent += len(text) - len(stripped)
    return f"{'-' if sign else ''}{stripped}e{exponent}"


async def test_version_2_rewrites_number_keys(index: SqlIndex) -> None:
    from dicomweb_kit_adapters.sql.schema import instance_values, schema_version
    from sqlalchemy import false, select, update

    records = await _orderby_archive(index)
    engine = index._engine
    numeric = (0x00200011, 0x00200013)  # SeriesNumber, InstanceNumber
    async with engine.begin() as conn:  # back to what version 1 stored
        rows = (
            await conn.execute(
                select(instance_values.c.instance_id, instance_values.c.tag, instance_values.c.value).where(
                    instance_values.c.tag.in_(numeric), instance_values.c.irregular == false()
                )
            )
        ).all()
        assert len(rows) == 9  # SeriesNumber of four instances, InstanceNumber of five
        for row in rows:
            await conn.execute(
                update(instance_values)
                .where(instance_values.c.instance_id == row.instance_id, instance_values.c.tag == row.tag)
                .values(value_key=_version_1_number_key(row.value))
            )
        await conn.execute(update(schema_version).values(version=1))
    await index.open()  # upgrades to version 2 (and on)
    async with engine.connect() as conn:
        assert await conn.scalar(select(schema_version.c.version)) == SCHEMA_VERSION
    for params in (
        [("orderby", "-SeriesNumber")],
        [("SeriesNumber", "+09")],
        [("SeriesNumber", "-03")],
        [("InstanceNumber", "1"), ("orderby", "SeriesNumber")],
    ):
        query = parse_qido(params, Level.SERIES, ResourceKey())
        got = [row.key for row in (await index.search(query)).rows]
        assert got == reference_keys(records, query), params
        assert got, params


async def test_unreachable_server_is_storage_unavailable() -> None:
    index = SqlIndex("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(StorageUnavailable, match="unavailable"):
        await index.open()
    await index.aclose()


async def test_version_3_adds_value_entities_and_indexes(index: SqlIndex) -> None:
    from dicomweb_kit_adapters.sql.schema import OLD_VALUE_INDEXES, VALUE_INDEXES, instance_values, schema_version
    from sqlalchemy import func, inspect, select, update

    records = await _orderby_archive(index)
    engine = index._engine
    kind = index._kind
    table = instance_values.name
    async with engine.begin() as conn:  # back to the version 2 schema
        for name in [*VALUE_INDEXES, "dwk_instances_study_sop_class"]:
            on = "dwk_instances" if name.startswith("dwk_instances") else table
            await conn.execute(text(f"DROP INDEX {name} ON {on}" if kind == "mysql" else f"DROP INDEX {name}"))
        for column in ("study_id", "series_id"):
            await conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        for name, columns in OLD_VALUE_INDEXES.items():
            await conn.execute(text(f"CREATE INDEX {name} ON {table} ({', '.join(columns)})"))
        await conn.execute(update(schema_version).values(version=2))
    await index.open()  # upgrades to version 3

    def indexes(sync: Any) -> set[str]:
        inspector = inspect(sync)
        return {str(i["name"]) for t in (table, "dwk_instances") for i in inspector.get_indexes(t)}

    async with engine.connect() as conn:
        assert await conn.scalar(select(schema_version.c.version)) == SCHEMA_VERSION
        found = await conn.run_sync(indexes)
        assert set(VALUE_INDEXES) | {"dwk_instances_study_sop_class"} <= found
        assert not set(OLD_VALUE_INDEXES) & found
        missing = select(func.count()).where(
            instance_values.c.study_id.is_(None) | instance_values.c.series_id.is_(None)
        )
        assert await conn.scalar(missing) == 0
    for params in (
        [("Modality", "CT")],
        [("StudyDate", "20000101-20301231"), ("limit", "2")],
        [("PatientName", "*a*")],
        [("SeriesNumber", "+09")],
    ):
        for level in (Level.STUDY, Level.SERIES):
            query = parse_qido(params, level, ResourceKey())
            got = [row.key for row in (await index.search(query)).rows]
            expected = reference_keys(records, query)
            if query.limit is not None:
                expected = expected[: query.limit]
            assert got == expected, (params, level)


async def test_version_4_adds_the_pixel_layout_column(index: SqlIndex) -> None:
    import msgspec
    from dicomweb_kit_adapters.sql.schema import instances, schema_version
    from sqlalchemy import inspect, select, update

    from dicomweb_kit import PixelLayout

    old = _record("1.2.50", "1.2.50.1", "1.2.50.1.1")
    await index.add(old, on_existing="keep")
    engine = index._engine
    async with engine.begin() as conn:  # back to the version 3 schema
        await conn.execute(text(f"ALTER TABLE {instances.name} DROP COLUMN pixel_layout"))
        await conn.execute(update(schema_version).values(version=3))
    await index.open()  # upgrades to version 4

    def columns(sync: Any) -> set[str]:
        return {column["name"] for column in inspect(sync).get_columns(instances.name)}

    async with engine.connect() as conn:
        assert await conn.scalar(select(schema_version.c.version)) == SCHEMA_VERSION
        assert "pixel_layout" in await conn.run_sync(columns)
    stored = await index.get(old.key)
    assert stored is not None and stored.pixel_layout is None  # stored before: computed lazily
    layout = PixelLayout(0x7FE00010, "OB", 900, 40, frames=(((908, 10),), ((926, 6),)))
    new = msgspec.structs.replace(_record("1.2.50", "1.2.50.1", "1.2.50.1.2"), pixel_layout=layout)
    await index.add(new, on_existing="keep")
    assert [r.pixel_layout async for r in index.records(ResourceKey("1.2.50"))] == [None, layout]


async def _study_rows(index: SqlIndex) -> list[tuple[str, Any, Any, Any]]:
    from dicomweb_kit_adapters.sql.schema import studies
    from sqlalchemy import select

    columns = (studies.c.study_uid, studies.c.representative_id, studies.c.modalities, studies.c.sop_classes)
    async with index._engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(select(*columns).order_by(studies.c.id))]


async def _study_values(index: SqlIndex) -> list[tuple[str, tuple[str, ...], tuple[str, ...], str]]:
    page = await index.search(parse_qido([], Level.STUDY, ResourceKey()))
    return [
        (row.key.study, row.modalities_in_study, row.sop_classes_in_study, row.attributes["00200013"]["Value"][0])
        for row in page.rows
    ]


async def test_version_8_keeps_the_study_values_on_the_study_row(index: SqlIndex) -> None:
    from dicomweb_kit_adapters.sql.schema import schema_version, studies
    from sqlalchemy import update

    long_modality = "X" * 300  # beyond the indexed length: an irregular row, read from metadata
    records = [
        _record("1.2.60", "1.2.60.1", "1.2.60.1.1", modality="CT", InstanceNumber=1),
        _record("1.2.60", "1.2.60.2", "1.2.60.2.1", modality="MR", InstanceNumber=2),
        _record("1.2.61", "1.2.61.1", "1.2.61.1.1", modality=long_modality, InstanceNumber=3),
        _record("1.2.61", "1.2.61.1", "1.2.61.1.2", modality="CT", InstanceNumber=4),
    ]
    await index.add_many(records[:3], on_existing="keep")
    await index.add(records[3], on_existing="keep")
    ct = "1.2.840.10008.5.1.4.1.1.2"
    expected = [("1.2.60", ("CT", "MR"), (ct,), 2), ("1.2.61", ("CT", long_modality), (ct,), 4)]
    assert await _study_values(index) == expected
    kept = await _study_rows(index)
    assert [(uid, modalities) for uid, _newest, modalities, _classes in kept] == [
        ("1.2.60", '["CT","MR"]'),
        ("1.2.61", f'["CT","{long_modality}"]'),
    ]
    async with index._engine.begin() as conn:  # not known (a value a column cannot hold)
        await conn.execute(update(studies).values(representative_id=None, modalities=None, sop_classes=None))
    assert await _study_values(index) == expected  # computed
    async with index._engine.begin() as conn:  # back to the version 7 schema
        for column in ("representative_id", "modalities", "sop_classes"):
            await conn.execute(text(f"ALTER TABLE {studies.name} DROP COLUMN {column}"))
        await conn.execute(update(schema_version).values(version=7))
    await index.open()  # upgrades to version 8: adds and fills them
    assert await _study_rows(index) == kept
    assert await _study_values(index) == expected
    # (the change feed keeps no Modality longer than a CS value: it used to fail the batch)
    assert len(await index.remove(ResourceKey("1.2.61"))) == 2
    assert await _study_values(index) == expected[:1]


async def test_add_many_is_one_group_in_insertion_order(index: SqlIndex) -> None:
    # Study/series uids deliberately out of sort order: ids must follow first appearance.
    first = _record("1.2.9", "1.2.9.9", "1.2.9.9.1", PatientID="A")
    second = _record("1.2.1", "1.2.1.5", "1.2.1.5.1", PatientID="B")
    third = _record("1.2.9", "1.2.9.1", "1.2.9.1.1", PatientID="C")
    again = _record("1.2.1", "1.2.1.5", "1.2.1.5.1", PatientID="D")  # same instance as second
    outcomes = await index.add_many([first, second, third, again], on_existing="keep")
    assert [o.stored for o in outcomes] == [True, True, True, False]
    assert outcomes[3].previous == second
    studies = await index.search(parse_qido([], Level.STUDY, ResourceKey()))
    assert [row.key.study for row in studies.rows] == ["1.2.9", "1.2.1"]
    assert [row.study_instances for row in studies.rows] == [2, 1]
    series = await index.search(parse_qido([], Level.SERIES, ResourceKey()))
    assert [row.key.series for row in series.rows] == ["1.2.9.9", "1.2.9.1", "1.2.1.5"]
    outcomes = await index.add_many([again, first], on_existing="replace")
    assert [o.stored for o in outcomes] == [True, True]
    assert outcomes[0].previous == second and outcomes[1].previous == first
    found = await index.search(parse_qido([("PatientID", "D")], Level.INSTANCE, ResourceKey()))
    assert [row.key.instance for row in found.rows] == ["1.2.1.5.1"]
    instances = await index.search(parse_qido([], Level.INSTANCE, ResourceKey()))
    assert [row.key.instance for row in instances.rows] == ["1.2.9.1.1", "1.2.9.9.1", "1.2.1.5.1"]


async def test_wide_date_range_walks_entities_in_order(index: SqlIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    from dicomweb_kit_adapters.sql import search

    monkeypatch.setattr(search, "_SEEK_ROWS", 1)  # every range counts as wide: the scan/walk path
    walked: list[Any] = []
    real = search._walked

    def spy(*args: Any) -> Any:
        walked.append(args[0])
        return real(*args)

    monkeypatch.setattr(search, "_walked", spy)
    records = []
    for s in range(6):
        for r in range(2):
            for i in range(2):
                date = f"20{10 + (s * 3 + r + i) % 8:02d}0101"
                modality = "MR" if (s + r) % 2 else "CT"
                uid = f"1.2.40.{s}.{r}.{i}"
                records.append(_record(f"1.2.40.{s}", f"1.2.40.{s}.{r}", uid, StudyDate=date, Modality=modality))
    for record in reversed(records[:4]):  # first study's instances out of order: ids follow insertion
        await index.add(record, on_existing="keep")
    await index.add_many(records[4:], on_existing="keep")
    inserted = [*reversed(records[:4]), *records[4:]]
    for params in (
        [("StudyDate", "20120101-20150101")],
        [("StudyDate", "20120101-20150101"), ("limit", "2"), ("offset", "1")],
        [("StudyDate", "20140101-"), ("Modality", "MR")],
        [("StudyDate", "-20110101"), ("limit", "1")],
    ):
        for level, scope in (
            (Level.STUDY, ResourceKey()),
            (Level.STUDY, ResourceKey("1.2.40.3")),
            (Level.SERIES, ResourceKey()),
            (Level.SERIES, ResourceKey("1.2.40.2")),
        ):
            query = parse_qido(params, level, scope)
            expected = [key for key in reference_keys(inserted, query) if scope.study in (None, key.study)]
            end = None if query.limit is None else query.offset + query.limit
            page = await index.search(query)
            assert [row.key for row in page.rows] == expected[query.offset : end], (params, level, scope)
            assert page.has_more == (end is not None and len(expected) > end)
    assert bool(walked) == (index._kind == "postgresql")
