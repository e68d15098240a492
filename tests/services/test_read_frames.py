"""Frames read by byte range: each frame is one ranged read of the blob (per fragment), located by the
layout computed at ingest, or computed from the blob for records stored without one."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import msgspec
import numpy as np
import pydicom
import pytest
from dicomweb_kit_adapters.memory import MemoryBlobStore, MemoryIndex
from pydicom.encaps import generate_frames

from dicomweb_kit import DicomWeb, InvalidRequest, ResourceKey, ResourceNotFound, Settings
from dicomweb_kit.codecs.part10 import parse_header
from dicomweb_kit.pixels.layout import layout_from_bytes
from dicomweb_kit.services import frames, ingest
from dicomweb_kit.testing import make_dataset, part10_bytes

pytestmark = pytest.mark.anyio

FILES = Path(pydicom.data.__file__).parent / "test_files"


class RecordingBlobStore(MemoryBlobStore):
    """Remembers every ranged read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, int, int | None]] = []

    async def get(self, key: str, /, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        self.reads.append((key, start, end))
        async for chunk in super().get(key, start=start, end=end):
            yield chunk


async def one(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def kit() -> AsyncIterator[DicomWeb]:
    async with DicomWeb(blobs=RecordingBlobStore(), index=MemoryIndex()) as k:
        yield k


def reads(kit: DicomWeb) -> list[tuple[str, int, int | None]]:
    store = kit.blobs
    assert isinstance(store, RecordingBlobStore)
    return store.reads


async def store(kit: DicomWeb, data: bytes) -> ResourceKey:
    stored = await ingest.ingest_instance(kit, one(data))
    reads(kit).clear()
    return stored.record.key


def encapsulated_frames(data: bytes) -> list[bytes]:
    ds = pydicom.dcmread(io.BytesIO(data))
    return list(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames") or 1)))


async def test_read_frame_is_one_ranged_read_of_the_frame(kit: DicomWeb) -> None:
    data = (FILES / "examples_ybr_color.dcm").read_bytes()
    key = await store(kit, data)
    expected = encapsulated_frames(data)
    assert len(expected) == 30
    frame = await frames.read_frame(kit, key, 7)
    assert frame.data == expected[6]
    assert frame.transfer_syntax_uid == pydicom.uid.JPEGBaseline8Bit
    assert frame.description.number_of_frames == 30 and frame.description.samples_per_pixel == 3
    [(_, start, end)] = reads(kit)
    assert end is not None and end - start == len(expected[6])
    assert data[start:end] == expected[6]


async def test_read_frames_in_the_order_asked(kit: DicomWeb) -> None:
    data = (FILES / "rtdose_rle.dcm").read_bytes()
    key = await store(kit, data)
    expected = encapsulated_frames(data)
    got = [f async for f in await frames.read_frames(kit, key, [3, 1, 15])]
    assert got == [expected[2], expected[0], expected[14]]
    assert len(reads(kit)) == 3


async def test_native_frames_of_a_multi_frame_instance(kit: DicomWeb) -> None:
    data = (FILES / "rtdose_expb.dcm").read_bytes()  # big endian: frames go out little endian
    key = await store(kit, data)
    array = pydicom.dcmread(io.BytesIO(data)).pixel_array
    result = await frames.read_frames(kit, key, [2, 15])
    got = [f async for f in result]
    assert result.transfer_syntax_uid == pydicom.uid.ExplicitVRLittleEndian  # read in little endian
    size = array[0].size * 4
    for data_, index in zip(got, (1, 14), strict=True):
        assert np.array_equal(np.frombuffer(data_, dtype="<u4").reshape(array[0].shape), array[index])
    assert [end - start for _, start, end in reads(kit) if end is not None] == [size] * 2


async def test_frame_out_of_range_names_the_range(kit: DicomWeb) -> None:
    key = await store(kit, (FILES / "rtdose_rle.dcm").read_bytes())
    with pytest.raises(ResourceNotFound, match=r"1\.\.15"):
        await frames.read_frames(kit, key, [1, 16])
    assert reads(kit) == []  # checked before any read


async def test_no_instance_and_no_pixel_data_are_not_found(kit: DicomWeb) -> None:
    ds = make_dataset()
    del ds.PixelData
    key = await store(kit, part10_bytes(ds))
    with pytest.raises(ResourceNotFound, match="no pixel data"):
        await frames.read_frame(kit, key, 1)
    with pytest.raises(ResourceNotFound, match="no instance"):
        await frames.read_frame(kit, ResourceKey(key.study, key.series, "1.2.3"), 1)


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("name", ["rtdose_rle.dcm", "SC_rgb_jpeg.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm"])
@pytest.mark.parametrize("size", [1, 3, 4096])
async def test_ingest_computes_the_layout_while_streaming(kit: DicomWeb, name: str, size: int) -> None:
    data = (FILES / name).read_bytes()
    stored = await ingest.ingest_instance(kit, chunks_of(data, size))
    assert stored.record.pixel_layout is not None
    assert stored.record.pixel_layout == layout_from_bytes(data, parse_header(data, complete=True))
    assert [(start, end) for _, start, end in reads(kit)] == []  # no read-back of the blob


async def test_a_header_longer_than_the_prefix_still_gets_its_layout() -> None:
    data = (FILES / "rtdose_rle.dcm").read_bytes()
    settings = Settings(header_prefix_bytes=600)  # the header is longer
    async with DicomWeb(blobs=MemoryBlobStore(), index=MemoryIndex(), settings=settings) as k:
        stored = await ingest.ingest_instance(k, chunks_of(data, 100))
    assert stored.record.pixel_layout == layout_from_bytes(data, parse_header(data, complete=True))


async def test_a_repaired_instance_has_offsets_of_the_stored_bytes(kit: DicomWeb) -> None:
    data = (FILES / "rtdose_rle.dcm").read_bytes()
    stored = await ingest.ingest_instance(kit, one(data[132:]))  # file meta and data set, no preamble
    assert stored.warning_reason is not None  # rewritten as Part 10
    got = [f async for f in await frames.read_frames(kit, stored.record.key, [1, 15])]
    expected = encapsulated_frames(data)
    assert got == [expected[0], expected[14]]


@pytest.mark.parametrize(
    ("text", "numbers"), [("1", [1]), ("3,1,2", [3, 1, 2]), (" 4 , 5", [4, 5]), ("0010", [10])]
)
def test_frame_list(text: str, numbers: list[int]) -> None:
    assert frames.parse_frame_list(text) == numbers


@pytest.mark.parametrize("text", ["", "1,", ",1", "a", "1;2", "0", "-1", "1.5", "1,1", "１", "1 2"])
def test_malformed_frame_list(text: str) -> None:
    with pytest.raises(InvalidRequest):
        frames.parse_frame_list(text)


async def without_layout(kit: DicomWeb, key: ResourceKey) -> None:
    """Make the stored record look like one stored before layouts existed."""
    record = await kit.index.get(key)
    assert record is not None and record.pixel_layout is not None
    await kit.index.add(msgspec.structs.replace(record, pixel_layout=None), on_existing="replace")
    reads(kit).clear()


@pytest.mark.parametrize("name", ["examples_ybr_color.dcm", "SC_rgb_rle_2frame.dcm", "JPGExtended.dcm"])
async def test_a_record_without_layout_is_scanned_by_ranged_reads(kit: DicomWeb, name: str) -> None:
    data = (FILES / name).read_bytes()
    key = await store(kit, data)
    record = await kit.index.get(key)
    assert record is not None and record.pixel_layout is not None and record.pixel_layout.frames is not None
    first_frame = record.pixel_layout.frames[0]
    await without_layout(kit, key)
    expected = encapsulated_frames(data)
    got = [f async for f in await frames.read_frames(kit, key, list(range(1, len(expected) + 1)))]
    assert got == expected
    # The header once, then item headers: nothing near the size of the pixel data.
    scan = reads(kit)[: -len(expected)]
    assert scan[0][1] == 0
    assert all(end is not None and end - start <= 64 << 10 for _, start, end in scan)
    assert all(end is not None and end - start < 100 for _, start, end in scan[1:])
    # Cached: a second request reads only the frame.
    reads(kit).clear()
    await frames.read_frame(kit, key, 1)
    assert len(reads(kit)) == len(first_frame)


async def test_a_native_record_without_layout(kit: DicomWeb) -> None:
    data = (FILES / "MR_small_bigendian.dcm").read_bytes()
    key = await store(kit, data)
    await without_layout(kit, key)
    frame = await frames.read_frame(kit, key, 1)
    array = pydicom.dcmread(io.BytesIO(data)).pixel_array
    assert np.array_equal(np.frombuffer(frame.data, dtype="<i2").reshape(array.shape), array)


async def test_deflated_instances_are_inflated_in_memory(kit: DicomWeb) -> None:
    data = (FILES / "image_dfl.dcm").read_bytes()
    key = await store(kit, data)
    assert (await kit.index.get(key)).pixel_layout is None  # type: ignore[union-attr]
    frame = await frames.read_frame(kit, key, 1)
    ds = pydicom.dcmread(io.BytesIO(data))
    assert frame.transfer_syntax_uid == pydicom.uid.ExplicitVRLittleEndian
    assert frame.data == ds.PixelData


async def test_deflated_beyond_the_limit_is_not_read(kit: DicomWeb) -> None:
    data = (FILES / "image_dfl.dcm").read_bytes()
    async with DicomWeb(blobs=MemoryBlobStore(), index=MemoryIndex(), settings=Settings(max_repair_bytes=1000)) as k:
        stored = await ingest.ingest_instance(k, one(data))
        with pytest.raises(ResourceNotFound, match="more than 1000"):
            await frames.read_frame(k, stored.record.key, 1)


def frame_numbers(count: int) -> Sequence[int]:
    return list(range(1, count + 1))
