"""The streaming ZIP writer, read back with the standard library's reader."""

from __future__ import annotations

import bisect
import io
import os
import struct
import zipfile
import zlib
from collections.abc import AsyncIterator, Iterable

import pytest

from dicomweb_kit.codecs.zip_stream import ZipEntry, write_zip

pytestmark = pytest.mark.anyio

LOCAL_HEADER = b"PK\x03\x04"
DATA_DESCRIPTOR = b"PK\x07\x08"
ZIP64_END = b"PK\x06\x06"
ZIP64_LOCATOR = b"PK\x06\x07"


async def chunked(data: bytes, step: int, *, views: bool = False) -> AsyncIterator[bytes | memoryview]:
    for offset in range(0, len(data), step):
        piece = data[offset : offset + step]
        yield memoryview(piece) if views else piece


async def entries_of(files: Iterable[tuple[str, bytes]], step: int = 70_000) -> AsyncIterator[ZipEntry]:
    for name, data in files:
        yield ZipEntry(name, chunked(data, step), size=len(data))


async def archive(entries: AsyncIterator[ZipEntry], **options: bool) -> bytes:
    return b"".join([bytes(piece) async for piece in write_zip(entries, **options)])


def local_headers(data: bytes) -> list[tuple[int, int, bytes]]:
    """(flag bits, compression method, extra field) of each local file header, in order."""
    out = []
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            at = info.header_offset
            assert data[at : at + 4] == LOCAL_HEADER
            flags, method = struct.unpack_from("<HH", data, at + 6)
            name_length, extra_length = struct.unpack_from("<HH", data, at + 26)
            start = at + 30 + name_length
            out.append((flags, method, data[start : start + extra_length]))
    return out


FILES = [
    ("STUDY/1_CT/0001.dcm", os.urandom(300_000)),
    ("STUDY/1_CT/0002.dcm", b""),
    ("STUDY/2_MR/Müller^Jürgen.dcm", os.urandom(17)),  # not ASCII: UTF-8, bit 11
    ("STUDY/3_SR/big.dcm", os.urandom(1 << 20)),
]


async def test_every_entry_reads_back_byte_exact_with_its_crc() -> None:
    data = await archive(entries_of(FILES))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None  # reads every entry and checks its CRC-32
        assert zf.namelist() == [name for name, _ in FILES]
        for (name, content), info in zip(FILES, zf.infolist(), strict=True):
            assert zf.read(name) == content
            assert zlib.crc32(content) == info.CRC
            assert info.compress_type == zipfile.ZIP_STORED
    for (name, _), (flags, method, extra) in zip(FILES, local_headers(data), strict=True):
        assert flags & 0x08  # sizes and CRC in a data descriptor after the data
        assert bool(flags & 0x800) == (not name.isascii())
        assert method == 0  # stored
        assert extra == b""  # known to be small: no ZIP64 extra
    assert data.count(DATA_DESCRIPTOR) == len(FILES)
    assert ZIP64_END not in data


async def test_memoryview_chunks_and_deflated_entries() -> None:
    text = b"(0004,1430) IMAGE " * 5000

    async def entries() -> AsyncIterator[ZipEntry]:
        yield ZipEntry("a", chunked(text, 1000, views=True), size=len(text))
        yield ZipEntry("DICOMDIR", chunked(text, 4096), size=len(text), compress=True)

    data = await archive(entries())
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read("a") == zf.read("DICOMDIR") == text
        assert zf.getinfo("DICOMDIR").compress_type == zipfile.ZIP_DEFLATED
        assert zf.getinfo("DICOMDIR").compress_size < len(text) // 10


async def test_forced_zip64_entries() -> None:
    data = await archive(entries_of(FILES), force_zip64=True)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        assert [zf.read(name) for name, _ in FILES] == [content for _, content in FILES]
    offset = 0
    for (_, content), (flags, _, extra) in zip(FILES, local_headers(data), strict=True):
        assert flags & 0x08
        # ZIP64 extended information extra field (APPNOTE 4.5.3): sizes deferred to the descriptor.
        assert extra == struct.pack("<HHQQ", 0x0001, 16, 0, 0)
        # The data descriptor of a ZIP64 entry carries 8-byte sizes (APPNOTE 4.3.9.2).
        at = data.index(DATA_DESCRIPTOR, offset)
        assert struct.unpack_from("<LQQ", data, at + 4) == (zlib.crc32(content), len(content), len(content))
        offset = at + 4


async def test_an_entry_of_unknown_size_is_written_with_zip64() -> None:
    async def entries() -> AsyncIterator[ZipEntry]:
        yield ZipEntry("unknown", chunked(b"x" * 10, 3))

    data = await archive(entries())
    [(_, _, extra)] = local_headers(data)
    assert extra[:2] == b"\x01\x00"
    assert zipfile.ZipFile(io.BytesIO(data)).read("unknown") == b"x" * 10


async def test_zip64_archive_records_when_offsets_and_counts_pass_the_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    # The limits lowered (as CPython's own zipfile tests do) so that small data takes the paths of
    # a > 4 GiB archive with > 65,535 entries: ZIP64 extra in the central directory for offsets
    # past the limit, and the ZIP64 end of central directory record and locator.
    with monkeypatch.context() as patch:
        patch.setattr(zipfile, "ZIP64_LIMIT", 1 << 12)
        patch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 3)
        data = await archive(entries_of(FILES))
    end = data.rindex(ZIP64_END)
    locator = data.rindex(ZIP64_LOCATOR)
    assert end < locator < data.rindex(b"PK\x05\x06")
    (entries_total, directory_size, directory_offset) = struct.unpack_from("<QQQ", data, end + 32)
    assert entries_total == len(FILES)
    assert struct.unpack_from("<Q", data, locator + 8)[0] == end
    assert data[directory_offset : directory_offset + 4] == b"PK\x01\x02"
    assert directory_offset + directory_size == end
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # read with the real limits
        assert zf.testzip() is None
        assert [zf.read(name) for name, _ in FILES] == [content for _, content in FILES]
        assert zf.infolist()[-1].header_offset > 1 << 12


async def test_more_than_65535_entries() -> None:
    count = 65_536 + 100

    async def entries() -> AsyncIterator[ZipEntry]:
        for i in range(count):
            yield ZipEntry(f"IM{i:06d}", chunked(b"%d" % i, 64), size=len(b"%d" % i))

    data = await archive(entries())
    assert ZIP64_END in data and ZIP64_LOCATOR in data
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        assert len(infos) == count
        assert zf.read(infos[-1]) == b"%d" % (count - 1)
        assert zf.read(infos[70_000 // 2]) == b"%d" % (70_000 // 2)


class _Holes(io.RawIOBase):
    """A readable, seekable file of everything an archive wrote, long zero runs kept as holes."""

    def __init__(self, zeros: bytes) -> None:
        self.zeros = zeros
        self.starts: list[int] = []
        self.pieces: list[bytes | None] = []
        self.size = self.position = 0

    def add(self, piece: bytes | memoryview) -> None:
        if len(piece):
            self.starts.append(self.size)
            self.pieces.append(None if piece is self.zeros else bytes(piece))
            self.size += len(piece)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = [offset, self.position + offset, self.size + offset][whence]
        return self.position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self.size - self.position)
        done = 0
        while done < wanted:
            i = bisect.bisect_right(self.starts, self.position) - 1
            end = self.starts[i + 1] if i + 1 < len(self.starts) else self.size
            take = min(wanted - done, end - self.position)
            piece = self.pieces[i]
            at = self.position - self.starts[i]
            buffer[done : done + take] = self.zeros[:take] if piece is None else piece[at : at + take]
            done += take
            self.position += take
        return wanted


async def test_an_entry_larger_than_4_gib() -> None:
    # A real 4 GiB + 8 MiB entry of zeros, streamed (one shared 4 MiB buffer, never all in memory),
    # then an entry after it whose offset needs ZIP64. About 2 s: crc32 runs at ~4 GB/s.
    zeros = bytes(4 << 20)
    size = (4 << 30) + (8 << 20)

    async def big() -> AsyncIterator[bytes]:
        for _ in range(size // len(zeros)):
            yield zeros

    async def entries() -> AsyncIterator[ZipEntry]:
        yield ZipEntry("before", chunked(b"abc", 3), size=3)
        yield ZipEntry("big", big(), size=size)
        yield ZipEntry("after", chunked(b"xyz", 3), size=3)

    written = _Holes(zeros)
    async for piece in write_zip(entries()):
        written.add(piece)
    crc = 0
    for _ in range(size // len(zeros)):
        crc = zlib.crc32(zeros, crc)
    with zipfile.ZipFile(io.BufferedReader(written, 1 << 20)) as zf:
        before, entry, after = zf.infolist()
        assert (entry.file_size, entry.compress_size, entry.CRC) == (size, size, crc)
        assert after.header_offset > 1 << 32
        assert zf.read("before") == b"abc" and zf.read("after") == b"xyz"
        # The big entry's data descriptor: ZIP64, 8-byte sizes.
        data_start = entry.header_offset + 30 + len("big") + 20
        written.seek(data_start + size)
        assert written.read(24) == DATA_DESCRIPTOR + struct.pack("<LQQ", crc, size, size)


async def test_entries_are_written_as_they_arrive() -> None:
    asked: list[str] = []

    async def payload(name: str) -> AsyncIterator[bytes]:
        asked.append(name)
        yield os.urandom(100_000)

    async def entries() -> AsyncIterator[ZipEntry]:
        for name in ("one", "two", "three"):
            yield ZipEntry(name, payload(name), size=100_000)

    stream = write_zip(entries())
    first = await anext(stream)
    assert asked == ["one"]
    assert bytes(first[:4]) == LOCAL_HEADER
    rest = [bytes(piece) async for piece in stream]
    assert asked == ["one", "two", "three"]
    with zipfile.ZipFile(io.BytesIO(bytes(first) + b"".join(rest))) as zf:
        assert zf.testzip() is None


async def test_a_failing_entry_propagates() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 10
        raise OSError("disk gone")

    async def entries() -> AsyncIterator[ZipEntry]:
        yield ZipEntry("a", broken(), size=20)

    with pytest.raises(OSError, match="disk gone"):
        await archive(entries())
