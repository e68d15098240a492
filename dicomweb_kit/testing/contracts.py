"""Contract suites every adapter must pass, unchanged: subclass and provide the fixture.

``BlobStoreContract`` needs a ``blob_store`` fixture, ``InstanceIndexContract`` an
``instance_index`` fixture (a fresh, empty index per test). Tests run under anyio: the test
module needs an ``anyio_backend`` fixture (``"asyncio"``) or the anyio pytest plugin defaults.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec
import pytest

from ..errors import ResourceNotFound
from ..index import InstanceIndex, InstanceRecord
from ..pixels.layout import PixelLayout
from ..query.matching import instance_matches
from ..query.ordering import sort_key
from ..query.qido_params import parse_qido
from ..query.terms import Query
from ..resources import Level, ResourceKey
from ..storage import BlobStore
from .datasets import CT_IMAGE_STORAGE, make_dataset, make_record

__all__ = ["BlobStoreContract", "InstanceIndexContract"]

pytestmark = pytest.mark.anyio


async def _chunks(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def _read(store: BlobStore, key: str, **kw: Any) -> bytes:
    return b"".join([bytes(c) async for c in store.get(key, **kw)])


class _Broken(Exception):
    pass


async def _broken_after(data: bytes) -> AsyncIterator[bytes]:
    yield data
    raise _Broken


@pytest.mark.anyio
class BlobStoreContract:
    """What every :class:`~dicomweb_kit.BlobStore` does."""

    async def test_is_a_blob_store(self, blob_store: BlobStore) -> None:
        assert isinstance(blob_store, BlobStore)

    async def test_put_then_get_returns_the_bytes(self, blob_store: BlobStore) -> None:
        data = bytes(range(256)) * 4000
        info = await blob_store.put("k1", _chunks(data[:1000], memoryview(data[1000:]).tobytes()))
        assert (info.key, info.size) == ("k1", len(data))
        assert await _read(blob_store, "k1") == data
        assert await blob_store.exists("k1")

    async def test_get_streams_a_byte_range(self, blob_store: BlobStore) -> None:
        data = bytes(range(256)) * 10
        await blob_store.put("range", _chunks(data))
        assert await _read(blob_store, "range", start=10, end=300) == data[10:300]
        assert await _read(blob_store, "range", start=2500) == data[2500:]
        assert await _read(blob_store, "range", start=0, end=0) == b""

    async def test_get_of_a_missing_key_is_not_found(self, blob_store: BlobStore) -> None:
        with pytest.raises(ResourceNotFound):
            await _read(blob_store, "missing")
        assert not await blob_store.exists("missing")

    async def test_a_failed_put_leaves_nothing(self, blob_store: BlobStore) -> None:
        with pytest.raises(_Broken):
            await blob_store.put("half", _broken_after(b"x" * 100_000))
        assert not await blob_store.exists("half")

    async def test_a_failed_put_keeps_the_previous_blob(self, blob_store: BlobStore) -> None:
        await blob_store.put("same", _chunks(b"old"))
        with pytest.raises(_Broken):
            await blob_store.put("same", _broken_after(b"new"))
        assert await _read(blob_store, "same") == b"old"

    async def test_a_cancelled_put_leaves_nothing(self, blob_store: BlobStore) -> None:
        async def slow() -> AsyncIterator[bytes]:
            yield b"x" * 1000
            await anyio.sleep(10)
            yield b"never"

        with anyio.move_on_after(0.1):
            await blob_store.put("cancelled", slow())
        assert not await blob_store.exists("cancelled")

    async def test_a_group_of_non_durable_puts_is_synced(self, blob_store: BlobStore) -> None:
        for i in range(5):
            await blob_store.put(f"group-{i}", _chunks(b"x" * i), durable=False)
        await blob_store.sync([f"group-{i}" for i in range(5)] + ["never-stored"])
        assert [await _read(blob_store, f"group-{i}") for i in range(5)] == [b"x" * i for i in range(5)]
        await blob_store.sync([])

    async def test_put_replaces(self, blob_store: BlobStore) -> None:
        await blob_store.put("r", _chunks(b"one"))
        await blob_store.put("r", _chunks(b"two!"))
        assert await _read(blob_store, "r") == b"two!"

    async def test_keys_lists_complete_blobs_only(self, blob_store: BlobStore) -> None:
        await blob_store.put("a", _chunks(b"1"))
        await blob_store.put("b/c", _chunks(b"2"))
        with pytest.raises(_Broken):
            await blob_store.put("broken", _broken_after(b"3"))
        assert sorted([key async for key in blob_store.iter_keys()]) == ["a", "b/c"]

    async def test_delete_is_idempotent(self, blob_store: BlobStore) -> None:
        await blob_store.put("d", _chunks(b"bytes"))
        await blob_store.delete(["d", "never-stored"])
        await blob_store.delete(["d"])
        assert not await blob_store.exists("d")

    async def test_empty_blob(self, blob_store: BlobStore) -> None:
        info = await blob_store.put("empty", _chunks())
        assert info.size == 0
        assert await _read(blob_store, "empty") == b""


STUDY_A, STUDY_B = "1.2.826.0.1.3680043.10.1", "1.2.826.0.1.3680043.10.2"
SERIES_A1, SERIES_A2, SERIES_B1 = STUDY_A + ".1", STUDY_A + ".2", STUDY_B + ".1"


def _record(study: str, series: str, instance: str, **attributes: Any) -> InstanceRecord:
    ds = make_dataset(study=study, series=series, instance=instance, **attributes)
    return make_record(ds, blob_key=f"blob-{instance}")


async def _keys(index: InstanceIndex, scope: ResourceKey) -> list[str]:
    return [r.instance_uid async for r in index.records(scope)]


@pytest.mark.anyio
class InstanceIndexContract:
    """What every :class:`~dicomweb_kit.InstanceIndex` does."""

    @pytest.fixture
    async def archive(self, instance_index: InstanceIndex) -> InstanceIndex:
        """Two studies: A (series A1 with two CT instances, A2 with one MR), B (one CT)."""
        rows = [
            _record(STUDY_A, SERIES_A1, SERIES_A1 + ".1", patient_name="PATCHWORK^QUILT", modality="CT"),
            _record(STUDY_A, SERIES_A1, SERIES_A1 + ".2", patient_name="PATCHWORK^QUILT", modality="CT"),
            _record(STUDY_A, SERIES_A2, SERIES_A2 + ".1", patient_name="PATCHWORK^QUILT", modality="MR"),
            _record(
                STUDY_B, SERIES_B1, SERIES_B1 + ".1", patient_name="Smith^John", modality="CT", study_date="20190605"
            ),
        ]
        for row in rows:
            assert (await instance_index.add(row, on_existing="keep")).stored
        return instance_index

    async def test_is_an_instance_index(self, instance_index: InstanceIndex) -> None:
        assert isinstance(instance_index, InstanceIndex)

    async def test_get_returns_the_record(self, archive: InstanceIndex) -> None:
        record = await archive.get(ResourceKey(STUDY_A, SERIES_A1, SERIES_A1 + ".2"))
        assert record is not None
        assert record.blob_key == f"blob-{SERIES_A1}.2"
        assert bytes(record.metadata)  # stored byte for byte
        assert await archive.get(ResourceKey(STUDY_A, SERIES_A1, "1.2.3")) is None

    async def test_metadata_is_kept_byte_for_byte(self, instance_index: InstanceIndex) -> None:
        record = _record(STUDY_A, SERIES_A1, "1.2.3.4", patient_name="Ünïcode^名前")
        await instance_index.add(record, on_existing="keep")
        stored = await instance_index.get(record.key)
        assert stored is not None and bytes(stored.metadata) == bytes(record.metadata)

    async def test_pixel_layout_round_trips(self, instance_index: InstanceIndex) -> None:
        native = msgspec.structs.replace(
            _record(STUDY_A, SERIES_A1, "1.2.3.5"),
            pixel_layout=PixelLayout(0x7FE00010, "OW", 1234, 32, big_endian=True),
        )
        fragments = ((2000, 10), (2018, 7)), ((2033, 4),)
        encapsulated = msgspec.structs.replace(
            _record(STUDY_A, SERIES_A1, "1.2.3.6"),
            pixel_layout=PixelLayout(0x7FE00010, "OB", 1990, 60, frames=fragments),
        )
        without = _record(STUDY_A, SERIES_A1, "1.2.3.7")
        await instance_index.add_many([native, encapsulated], on_existing="keep")
        await instance_index.add(without, on_existing="keep")
        for record in (native, encapsulated, without):
            stored = await instance_index.get(record.key)
            assert stored is not None and stored.pixel_layout == record.pixel_layout
        listed = [r.pixel_layout async for r in instance_index.records(ResourceKey(STUDY_A))]
        assert listed == [native.pixel_layout, encapsulated.pixel_layout, None]

    async def test_records_by_scope_in_insertion_order(self, archive: InstanceIndex) -> None:
        assert await _keys(archive, ResourceKey(STUDY_A)) == [SERIES_A1 + ".1", SERIES_A1 + ".2", SERIES_A2 + ".1"]
        assert await _keys(archive, ResourceKey(STUDY_A, SERIES_A2)) == [SERIES_A2 + ".1"]
        assert await _keys(archive, ResourceKey()) == [
            SERIES_A1 + ".1",
            SERIES_A1 + ".2",
            SERIES_A2 + ".1",
            SERIES_B1 + ".1",
        ]
        assert await _keys(archive, ResourceKey("9.9.9")) == []
        assert await _keys(archive, ResourceKey(STUDY_B, SERIES_A1)) == []

    async def test_stored_metadata_if_offered_is_the_records_metadata(self, archive: InstanceIndex) -> None:
        """``stored_metadata(scope)`` is optional (the core falls back to ``records``); an index
        that offers it gives each record's metadata bytes in the same order."""
        fast = getattr(archive, "stored_metadata", None)
        if fast is None:
            pytest.skip(f"{type(archive).__name__} offers no stored_metadata()")
        for scope in (ResourceKey(), ResourceKey(STUDY_A), ResourceKey(STUDY_A, SERIES_A1), ResourceKey("9.9.9")):
            expected = [bytes(record.metadata) async for record in archive.records(scope)]
            assert [bytes(data) async for data in fast(scope)] == expected

    async def test_add_many_is_add_in_one_go(self, archive: InstanceIndex) -> None:
        new = [_record(STUDY_B, SERIES_B1, f"{SERIES_B1}.{i}") for i in range(2, 5)]
        again = _record(STUDY_A, SERIES_A1, SERIES_A1 + ".1", patient_name="Other^Name")
        twice = _record(STUDY_B, SERIES_B1, f"{SERIES_B1}.2", patient_name="Twice^Name")
        outcomes = await archive.add_many([*new, again, twice], on_existing="keep")
        assert [o.stored for o in outcomes] == [True, True, True, False, False]
        assert outcomes[3].previous is not None and outcomes[3].previous.blob_key == f"blob-{SERIES_A1}.1"
        assert outcomes[4].previous is not None and outcomes[4].previous.blob_key == new[0].blob_key
        summary = await archive.summary(ResourceKey(STUDY_B))
        assert summary is not None and summary.instances == 4
        replaced = await archive.add_many([twice], on_existing="replace")
        assert replaced[0].stored and replaced[0].previous is not None
        assert await archive.add_many([], on_existing="keep") == []

    async def test_summary(self, archive: InstanceIndex) -> None:
        summary = await archive.summary(ResourceKey(STUDY_A))
        assert summary is not None
        assert (summary.instances, summary.transfer_syntaxes) == (3, ("1.2.840.10008.1.2.1",))
        assert await archive.summary(ResourceKey("9.9.9")) is None
        series = await archive.summary(ResourceKey(STUDY_A, SERIES_A2))
        assert series is not None and series.instances == 1

    async def test_summary_version_changes_with_every_write(self, archive: InstanceIndex) -> None:
        scope = ResourceKey(STUDY_A)
        versions = set()

        async def version() -> str:
            summary = await archive.summary(scope)
            return summary.version if summary else "gone"

        versions.add(await version())
        assert await version() in versions  # stable while nothing changes
        replacement = _record(STUDY_A, SERIES_A1, SERIES_A1 + ".1", patient_name="New^Name")
        await archive.add(replacement, on_existing="replace")
        versions.add(await version())
        await archive.add(_record(STUDY_A, SERIES_A1, SERIES_A1 + ".3"), on_existing="keep")
        versions.add(await version())
        await archive.remove(ResourceKey(STUDY_A, SERIES_A1, SERIES_A1 + ".2"))
        versions.add(await version())
        assert len(versions) == 4

    async def test_keep_leaves_the_first_record(self, archive: InstanceIndex) -> None:
        again = _record(STUDY_A, SERIES_A1, SERIES_A1 + ".1", patient_name="Other^Name")
        outcome = await archive.add(again, on_existing="keep")
        assert not outcome.stored
        assert outcome.previous is not None and outcome.previous.blob_key == f"blob-{SERIES_A1}.1"
        stored = await archive.get(again.key)
        assert stored is not None and stored.attributes["00100010"]["Value"][0]["Alphabetic"] == "PATCHWORK^QUILT"

    async def test_replace_swaps_the_record(self, archive: InstanceIndex) -> None:
        again = _record(STUDY_A, SERIES_A1, SERIES_A1 + ".1", patient_name="Other^Name")
        again = InstanceRecord(**{**{f: getattr(again, f) for f in again.__struct_fields__}, "blob_key": "new-blob"})
        outcome = await archive.add(again, on_existing="replace")
        assert outcome.stored and outcome.previous is not None
        assert outcome.previous.blob_key == f"blob-{SERIES_A1}.1"
        stored = await archive.get(again.key)
        assert stored is not None and stored.blob_key == "new-blob"
        assert len(await _keys(archive, ResourceKey(STUDY_A))) == 3

    async def test_study_search_counts(self, archive: InstanceIndex) -> None:
        page = await archive.search(parse_qido([], Level.STUDY, ResourceKey()))
        assert [row.key.study for row in page.rows] == [STUDY_A, STUDY_B]
        a = page.rows[0]
        assert (a.study_series, a.study_instances) == (2, 3)
        assert a.modalities_in_study == ("CT", "MR")
        assert not page.has_more

    async def test_series_search_counts(self, archive: InstanceIndex) -> None:
        page = await archive.search(parse_qido([], Level.SERIES, ResourceKey(STUDY_A)))
        assert [(row.key.series, row.series_instances) for row in page.rows] == [(SERIES_A1, 2), (SERIES_A2, 1)]

    async def test_wildcard_person_name(self, archive: InstanceIndex) -> None:
        page = await archive.search(parse_qido([("PatientName", "*patch*")], Level.STUDY, ResourceKey()))
        assert [row.key.study for row in page.rows] == [STUDY_A]

    async def test_a_study_matches_on_any_instance(self, archive: InstanceIndex) -> None:
        page = await archive.search(parse_qido([("ModalitiesInStudy", "MR")], Level.STUDY, ResourceKey()))
        assert [row.key.study for row in page.rows] == [STUDY_A]
        assert page.rows[0].modalities_in_study == ("CT", "MR")

    async def test_study_values_follow_every_write(self, archive: InstanceIndex) -> None:
        """ModalitiesInStudy / SOPClassesInStudy (PS3.18 Table 10.6.3-3) are those of the
        study's instances after adds, replacements and removals, and the study's attributes
        stay its newest instance's."""

        async def study_a() -> tuple[tuple[str, ...], tuple[str, ...], str]:
            [row] = (await archive.search(parse_qido([], Level.STUDY, ResourceKey(STUDY_A)))).rows
            return row.modalities_in_study, row.sop_classes_in_study, row.attributes["00080020"]["Value"][0]

        mr_class = "1.2.840.10008.5.1.4.1.1.4"
        assert await study_a() == (("CT", "MR"), (CT_IMAGE_STORAGE,), "20240102")
        new = _record(
            STUDY_A, SERIES_A2, SERIES_A2 + ".2", modality="SEG", SOPClassUID=mr_class, study_date="20240103"
        )
        await archive.add_many([new], on_existing="keep")
        assert await study_a() == (("CT", "MR", "SEG"), (CT_IMAGE_STORAGE, mr_class), "20240103")
        # The MR instance becomes a US one: MR leaves the study.
        await archive.add(_record(STUDY_A, SERIES_A2, SERIES_A2 + ".1", modality="US"), on_existing="replace")
        assert await study_a() == (("CT", "SEG", "US"), (CT_IMAGE_STORAGE, mr_class), "20240102")
        await archive.remove(ResourceKey(STUDY_A, SERIES_A2, SERIES_A2 + ".2"))
        assert await study_a() == (("CT", "US"), (CT_IMAGE_STORAGE,), "20240102")
        await archive.remove(ResourceKey(STUDY_A, SERIES_A2))
        assert await study_a() == (("CT",), (CT_IMAGE_STORAGE,), "20240102")

    async def test_date_range(self, archive: InstanceIndex) -> None:
        page = await archive.search(parse_qido([("StudyDate", "-20200101")], Level.STUDY, ResourceKey()))
        assert [row.key.study for row in page.rows] == [STUDY_B]

    async def test_paging_is_stable(self, archive: InstanceIndex) -> None:
        seen = []
        for offset in range(5):
            page = await archive.search(
                parse_qido([("limit", "1"), ("offset", str(offset))], Level.INSTANCE, ResourceKey())
            )
            seen += [row.key.instance for row in page.rows]
            assert page.has_more == (offset < 3)
        assert seen == [SERIES_A1 + ".1", SERIES_A1 + ".2", SERIES_A2 + ".1", SERIES_B1 + ".1"]

    async def test_remove(self, archive: InstanceIndex) -> None:
        keys = await archive.remove(ResourceKey(STUDY_A, SERIES_A1))
        assert sorted(keys) == [f"blob-{SERIES_A1}.1", f"blob-{SERIES_A1}.2"]
        assert await _keys(archive, ResourceKey(STUDY_A)) == [SERIES_A2 + ".1"]
        page = await archive.search(parse_qido([], Level.STUDY, ResourceKey()))
        assert page.rows[0].study_instances == 1

    async def test_concurrent_adds_keep_exact_counts(self, instance_index: InstanceIndex) -> None:
        records = [_record(STUDY_A, SERIES_A1 if i % 2 else SERIES_A2, f"{STUDY_A}.9.{i}") for i in range(40)]

        async def add(record: InstanceRecord) -> None:
            await instance_index.add(record, on_existing="keep")

        async with anyio.create_task_group() as tg:
            for record in records + records[:10]:  # ten duplicates race their originals
                tg.start_soon(add, record)
        page = await instance_index.search(parse_qido([], Level.STUDY, ResourceKey()))
        assert [(r.study_series, r.study_instances) for r in page.rows] == [(2, 40)]

    async def test_search_agrees_with_the_reference_matcher(self, instance_index: InstanceIndex) -> None:
        rng = random.Random(7)
        names = ["PATCHWORK^QUILT", "Patchett^Anna", "SMITH^JOHN", "DISPATCH^ROBIN", "Nguyen^Linh"]
        records = []
        for s in range(6):
            for r in range(2):
                for i in range(3):
                    records.append(
                        _record(
                            f"1.2.3.{s}",
                            f"1.2.3.{s}.{r}",
                            f"1.2.3.{s}.{r}.{i}",
                            patient_name=names[s % len(names)],
                            modality=rng.choice(["CT", "MR", "US"]),
                            study_date=f"20{rng.randint(18, 24)}0{rng.randint(1, 9)}1{rng.randint(0, 9)}",
                            SeriesDescription=rng.choice(["AXIAL", "SAG T1", "COR"]),
                        )
                    )
        for record in records:
            await instance_index.add(record, on_existing="keep")
        queries = [
            [("PatientName", "*PATCH*")],
            [("PatientName", "Smith^John")],
            [("Modality", "CT")],
            [("StudyDate", "20200101-20221231")],
            [("StudyDate", "-20191231"), ("Modality", "MR")],
            [("ModalitiesInStudy", "US")],
            [("SeriesDescription", "SAG*")],
            [("PatientName", "?atch*")],
        ]
        for params in queries:
            for level in Level:
                query = parse_qido(params, level, ResourceKey())
                page = await instance_index.search(query)
                expected = _reference_keys(records, query.terms, level)
                assert [row.key for row in page.rows] == expected, (params, level)

    # ----------------------------------------------------------------------------------------
    # orderby (dicomweb_kit.query.ordering)
    # ----------------------------------------------------------------------------------------

    @pytest.fixture
    async def sortable(self, instance_index: InstanceIndex) -> list[InstanceRecord]:
        """Five one-instance studies: dates, mixed-case names, modalities, one without date or name."""
        specs = [
            ("1.2.40.1", dict(study_date="20200101", patient_name="smith^john", modality="CT")),
            ("1.2.40.2", dict(study_date="20190605", patient_name="Adams^Amy", modality="MR")),
            ("1.2.40.3", dict(study_date="", patient_name="", modality="CT")),
            ("1.2.40.4", dict(study_date="20210315", patient_name="BAKER^BOB", modality="MR")),
            ("1.2.40.5", dict(study_date="20200101", patient_name="adams^zed", modality="CT")),
        ]
        records = [_record(uid, f"{uid}.1", f"{uid}.1.1", **attrs) for uid, attrs in specs]
        for record in records:
            assert (await instance_index.add(record, on_existing="keep")).stored
        return records

    @staticmethod
    async def _ordered(
        index: InstanceIndex,
        params: list[tuple[str, str]],
        level: Level = Level.STUDY,
        scope: ResourceKey | None = None,
    ) -> list[str]:
        query = parse_qido(params, level, scope or ResourceKey(), max_limit=10_000)
        page = await index.search(query)
        key = {Level.STUDY: "study", Level.SERIES: "series", Level.INSTANCE: "instance"}[level]
        return [str(getattr(row.key, key)) for row in page.rows]

    async def test_orderby_date_ascending_and_descending(
        self, instance_index: InstanceIndex, sortable: list[InstanceRecord]
    ) -> None:
        # Equal dates keep the insertion order in both directions; the study without a date is last.
        up = await self._ordered(instance_index, [("orderby", "StudyDate")])
        assert up == ["1.2.40.2", "1.2.40.1", "1.2.40.5", "1.2.40.4", "1.2.40.3"]
        down = await self._ordered(instance_index, [("orderby", "-StudyDate")])
        assert down == ["1.2.40.4", "1.2.40.1", "1.2.40.5", "1.2.40.2", "1.2.40.3"]
        by_tag = await self._ordered(instance_index, [("orderby", "-00080020")])
        assert by_tag == down

    async def test_orderby_person_name_ignores_case(
        self, instance_index: InstanceIndex, sortable: list[InstanceRecord]
    ) -> None:
        up = await self._ordered(instance_index, [("orderby", "PatientName")])
        assert up == ["1.2.40.2", "1.2.40.5", "1.2.40.4", "1.2.40.1", "1.2.40.3"]  # Adams, adams, BAKER, smith, -
        down = await self._ordered(instance_index, [("orderby", "-PatientName")])
        assert down == ["1.2.40.1", "1.2.40.4", "1.2.40.5", "1.2.40.2", "1.2.40.3"]

    async def test_orderby_multiple_keys_and_terms(
        self, instance_index: InstanceIndex, sortable: list[InstanceRecord]
    ) -> None:
        keys = await self._ordered(instance_index, [("orderby", "Modality"), ("orderby", "-StudyDate")])
        assert keys == ["1.2.40.1", "1.2.40.5", "1.2.40.3", "1.2.40.4", "1.2.40.2"]
        keys = await self._ordered(instance_index, [("orderby", "-Modality,PatientName")])
        assert keys == ["1.2.40.2", "1.2.40.4", "1.2.40.5", "1.2.40.1", "1.2.40.3"]
        matched = await self._ordered(instance_index, [("Modality", "CT"), ("orderby", "-PatientName")])
        assert matched == ["1.2.40.1", "1.2.40.5", "1.2.40.3"]

    async def test_orderby_numbers_at_series_level(self, instance_index: InstanceIndex) -> None:
        study = "1.2.41.1"
        numbers = [9, 10, None, 2, 100, 10]
        for n, number in enumerate(numbers):
            extra: dict[str, Any] = {"SeriesNumber": number if number is not None else ""}
            record = _record(study, f"{study}.{n}", f"{study}.{n}.1", **extra)
            await instance_index.add(record, on_existing="keep")
        scope = ResourceKey(study)
        up = await self._ordered(instance_index, [("orderby", "SeriesNumber")], Level.SERIES, scope)
        assert up == [f"{study}.{n}" for n in (3, 0, 1, 5, 4, 2)]  # 2, 9, 10, 10, 100, missing
        down = await self._ordered(instance_index, [("orderby", "-SeriesNumber")], Level.SERIES, scope)
        assert down == [f"{study}.{n}" for n in (4, 1, 5, 0, 3, 2)]  # 100, 10, 10, 9, 2, missing

    async def test_orderby_uses_the_newest_instance(self, instance_index: InstanceIndex) -> None:
        await instance_index.add(
            _record("1.2.42.1", "1.2.42.1.1", "1.2.42.1.1.1", study_date="20990101"), on_existing="keep"
        )
        await instance_index.add(
            _record("1.2.42.2", "1.2.42.2.1", "1.2.42.2.1.1", study_date="20100101"), on_existing="keep"
        )
        await instance_index.add(
            _record("1.2.42.1", "1.2.42.1.2", "1.2.42.1.2.1", study_date="20000101"), on_existing="keep"
        )
        assert await self._ordered(instance_index, [("orderby", "StudyDate")]) == ["1.2.42.1", "1.2.42.2"]
        # A replaced instance is stored anew: it is now the study's newest, with its own date.
        again = _record("1.2.42.1", "1.2.42.1.1", "1.2.42.1.1.1", study_date="20500101")
        await instance_index.add(again, on_existing="replace")
        assert await self._ordered(instance_index, [("orderby", "StudyDate")]) == ["1.2.42.2", "1.2.42.1"]

    async def test_paging_under_orderby_has_no_gaps(self, instance_index: InstanceIndex) -> None:
        records = [
            _record(
                f"1.2.43.{n}", f"1.2.43.{n}.1", f"1.2.43.{n}.1.1", study_date=f"2020010{n % 3 + 1}" if n % 4 else ""
            )
            for n in range(11)
        ]
        for record in records:
            await instance_index.add(record, on_existing="keep")
        for order in ("StudyDate", "-StudyDate", "-StudyDate,-PatientID"):
            everything = await self._ordered(instance_index, [("orderby", order)])
            assert sorted(everything) == sorted(r.study_uid for r in records)
            seen: list[str] = []
            for offset in range(0, 12, 3):
                query = parse_qido(
                    [("orderby", order), ("limit", "3"), ("offset", str(offset))], Level.STUDY, ResourceKey()
                )
                page = await instance_index.search(query)
                seen += [str(row.key.study) for row in page.rows]
                assert page.has_more == (offset + 3 < len(records))
            assert seen == everything, order

    async def test_orderby_agrees_with_the_shared_sort_key(self, instance_index: InstanceIndex) -> None:
        rng = random.Random(11)
        names = ["PATCHWORK^QUILT", "patchett^anna", "Smith^John", "=山田^太郎", "", "Émile^Zola", "smith^john"]
        records = []
        for s in range(5):
            for r in range(2):
                for i in range(rng.randint(1, 3)):
                    attrs: dict[str, Any] = {
                        "patient_name": rng.choice(names),
                        "modality": rng.choice(["CT", "MR", "ct"]),
                        "study_date": rng.choice(["20200101", "20191231", "", "20200615"]),
                        "StudyTime": rng.choice(["10", "0930", "101500.25", ""]),
                        "SeriesNumber": rng.choice([1, 2, 10, -3, ""]),
                        "SliceThickness": rng.choice(["0.5", "10", "2.50", "1e1", ""]),
                        "InstitutionName": rng.choice(["Zeta", "alpha", "Beta", "", "Ärzte"]),
                        "SeriesDescription": rng.choice(["AXIAL", "axial", "Sag", " padded", ""]),
                    }
                    records.append(_record(f"1.2.44.{s}", f"1.2.44.{s}.{r}", f"1.2.44.{s}.{r}.{i}", **attrs))
        rng.shuffle(records)
        for record in records:
            await instance_index.add(record, on_existing="keep")
        orders = [
            "PatientName",
            "-PatientName,StudyDate",
            "StudyDate,-StudyTime",
            "-SeriesNumber",
            "SliceThickness,-SeriesInstanceUID",
            "-InstitutionName",
            "SeriesDescription,-Modality",
            "-SOPInstanceUID",
        ]
        for order in orders:
            for params in ([], [("Modality", "CT")], [("InstitutionName", "*a*")]):
                for level in Level:
                    query = parse_qido([*params, ("orderby", order)], level, ResourceKey())
                    expected = _reference_ordered(records, query)
                    got = [row.key for row in (await instance_index.search(query)).rows]
                    assert got == expected, (order, params, level)
                    paged = parse_qido(
                        [*params, ("orderby", order), ("limit", "3"), ("offset", "2")], level, ResourceKey()
                    )
                    got = [row.key for row in (await instance_index.search(paged)).rows]
                    assert got == expected[2:5], (order, params, level, "paged")


def _reference_ordered(records: list[InstanceRecord], query: Query) -> list[ResourceKey]:
    """Matching entities in the stable order, sorted with the shared sort key of their newest instance."""
    grouped: dict[str, dict[str, list[InstanceRecord]]] = {}
    for record in records:
        grouped.setdefault(record.study_uid, {}).setdefault(record.series_uid, []).append(record)
    entities: dict[ResourceKey, list[InstanceRecord]] = {}
    for study_uid, series_map in grouped.items():
        for series_uid, members in series_map.items():
            for record in members:
                key = {
                    Level.STUDY: ResourceKey(study_uid),
                    Level.SERIES: ResourceKey(study_uid, series_uid),
                    Level.INSTANCE: record.key,
                }[query.level]
                entities.setdefault(key, []).append(record)
    newest = {key: max(members, key=records.index) for key, members in entities.items()}
    matching = [
        key for key, members in entities.items() if any(instance_matches(query.terms, r.attributes) for r in members)
    ]
    return sorted(matching, key=lambda key: sort_key(newest[key].attributes, query.orderby))


def _reference_keys(records: list[InstanceRecord], terms: Any, level: Level) -> list[ResourceKey]:
    keys: list[ResourceKey] = []
    for record in records:
        key = {
            Level.STUDY: ResourceKey(record.study_uid),
            Level.SERIES: ResourceKey(record.study_uid, record.series_uid),
            Level.INSTANCE: record.key,
        }[level]
        if key not in keys and instance_matches(terms, record.attributes):
            keys.append(key)
    return keys
