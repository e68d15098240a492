"""The ingest path: the header is parsed from kept bytes, pixels are never copied, long headers still work."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from dicomweb_kit_adapters.memory import MemoryBlobStore, MemoryIndex

from dicomweb_kit import DicomWeb, ResourceKey, Settings
from dicomweb_kit.services import ingest
from dicomweb_kit.testing import make_dataset, part10_bytes

pytestmark = pytest.mark.anyio


async def chunked(data: bytes, size: int = 7000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_the_kept_prefix_stops_at_pixel_data(monkeypatch: pytest.MonkeyPatch) -> None:
    kept: list[int] = []
    original = ingest._read_record

    async def spy(kit, key, tee, *args):
        kept.append(len(tee.prefix))
        return await original(kit, key, tee, *args)

    monkeypatch.setattr(ingest, "_read_record", spy)
    ds = make_dataset(rows=256, columns=256)  # 128 KiB of pixels
    data = part10_bytes(ds)
    async with DicomWeb(blobs=MemoryBlobStore(), index=MemoryIndex()) as kit:
        stored = await ingest.ingest_instance(kit, chunked(data))
    assert stored.record.instance_uid == ds.SOPInstanceUID
    assert kept[0] < 2000 < len(data)


async def test_a_header_longer_than_the_prefix_is_read_back() -> None:
    ds = make_dataset(StudyDescription="x" * 60, ImageComments="y" * 5000)
    data = part10_bytes(ds)
    async with DicomWeb(
        blobs=MemoryBlobStore(), index=MemoryIndex(), settings=Settings(header_prefix_bytes=300)
    ) as kit:
        stored = await ingest.ingest_instance(kit, chunked(data, 100))
        record = await kit.index.get(ResourceKey(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID))
    assert record is not None and record.attributes["00204000"]["Value"] == ["y" * 5000]
    assert stored.record.size == len(data)


async def test_a_batch_commits_together_and_duplicates_lose_their_blobs() -> None:
    first = make_dataset()
    again = make_dataset(study=first.StudyInstanceUID, series=first.SeriesInstanceUID, instance=first.SOPInstanceUID)
    async with DicomWeb(blobs=MemoryBlobStore(), index=MemoryIndex()) as kit:
        prepared = [await ingest.prepare_instance(kit, chunked(part10_bytes(ds))) for ds in (first, again)]
        assert await kit.index.summary(ResourceKey(first.StudyInstanceUID)) is None  # nothing visible yet
        outcomes = await ingest.commit_instances(kit, prepared)
        assert [getattr(o, "already_stored", None) for o in outcomes] == [False, True]
        assert len([k async for k in kit.blobs.iter_keys()]) == 1


class _SlowToAcknowledge(MemoryIndex):
    """An index whose commit is done before its call returns (a database's COMMIT, then the
    round trip that acknowledges it)."""

    def __init__(self) -> None:
        super().__init__()
        self.committed = anyio.Event()

    async def add_many(self, records, /, *, on_existing):  # type: ignore[no-untyped-def]
        outcomes = await super().add_many(records, on_existing=on_existing)
        self.committed.set()
        await anyio.sleep(0.2)
        return outcomes


async def test_a_client_leaving_during_the_commit_leaves_no_record_without_its_blob() -> None:
    index = _SlowToAcknowledge()
    ds = make_dataset()
    async with DicomWeb(blobs=MemoryBlobStore(), index=index) as kit, anyio.create_task_group() as tasks:
        tasks.start_soon(kit.store, ds)
        await index.committed.wait()
        tasks.cancel_scope.cancel()  # the request's task is cancelled while the commit is acknowledged
    async with kit:
        key = ResourceKey(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        assert await index.get(key) is not None
        assert (await kit.retrieve_instance(key))[128:132] == b"DICM"  # its blob is there


async def _ingest_counting_pydicom(monkeypatch: pytest.MonkeyPatch, **kit_args: object) -> tuple[object, list[str]]:
    """Ingest one instance; return its stored record and the threads pydicom's parse ran in."""
    import threading

    parsed_in: list[str] = []
    original = ingest.parse_header

    def counting(*args: object, **kwargs: object) -> object:
        parsed_in.append(threading.current_thread().name)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest, "parse_header", counting)
    ds = make_dataset(rows=64, columns=64)
    async with DicomWeb(blobs=MemoryBlobStore(), index=MemoryIndex(), **kit_args) as kit:  # type: ignore[arg-type]
        stored = await ingest.ingest_instance(kit, chunked(part10_bytes(ds)))
    assert stored.record.instance_uid == ds.SOPInstanceUID
    return stored.record, parsed_in


async def test_without_a_hook_the_header_is_walked_on_the_loop_not_parsed_by_pydicom(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record, parsed_in = await _ingest_counting_pydicom(monkeypatch)
    assert parsed_in == []  # the header walk built the record
    assert record.attributes["00280010"] == {"vr": "US", "Value": [64]}  # type: ignore[attr-defined]


async def test_a_before_store_hook_gets_a_pydicom_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    async def hook(incoming: object) -> None:
        seen.append(str(incoming.dataset.PatientName))  # type: ignore[attr-defined]

    _record, parsed_in = await _ingest_counting_pydicom(monkeypatch, before_store=hook)
    assert parsed_in and all(name != "MainThread" for name in parsed_in)  # pydicom parses in a thread
    assert seen and seen[0]


async def test_a_failing_header_walk_falls_back_to_pydicom(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise IndexError("walker bug")

    monkeypatch.setattr(ingest, "walk_header", broken)
    record, parsed_in = await _ingest_counting_pydicom(monkeypatch)
    assert len(parsed_in) == 1
    assert record.attributes["00280010"] == {"vr": "US", "Value": [64]}  # type: ignore[attr-defined]
