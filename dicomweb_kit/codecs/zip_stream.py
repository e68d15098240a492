"""A streaming ZIP writer: entries go out as their bytes arrive, nothing is seeked or buffered.

The format work is done by the standard library's :mod:`zipfile` writing to a non-seekable sink,
the mode it has for pipes and sockets: each entry gets a local header with zero sizes, general
purpose bit 3 and a data descriptor (CRC-32 and sizes after the data, APPNOTE 4.3.9); names
outside ASCII are UTF-8 with bit 11; ZIP64 is used per entry (local header extra, 8-byte data
descriptor) when the entry may pass 4 GiB, and for the archive (ZIP64 end of central directory
record and locator) when offsets pass 4 GiB or there are more than 65,535 entries. This module
only adapts it to async producers: ``zipfile`` writes into a sink, and after each chunk we hand
on what the sink collected.

Why the standard library and not our own struct packing or a package (``stream-zip``,
``zipstream-ng``): the hot path of either is the same ``zlib.crc32`` over every byte (about
4 GB/s here) and a pass-through of the chunk; ``benchmarks/zip_benchmark.py`` measures the
adapter within a few percent of that ceiling, and the format details (ZIP64 in central
directory and end records, version fields, UTF-8 flag) are CPython's, tested by CPython.
What it costs: ``zipfile`` keeps a ``ZipInfo`` per entry (about 400 bytes) for the central
directory, and writes that directory in one go at the end; we do that in a worker thread for
large archives so the event loop is not held.

Entries are STORED by default. DICOM pixel data is either already compressed (JPEG, JPEG 2000,
RLE...) or noisy 12-16 bit samples that deflate at best 1.5-2x at ~50 MB/s per core, which
would make a download CPU-bound at a small fraction of disk and network speed. An entry may ask
for ``compress=True`` (deflate), which suits small, text-like entries such as a DICOMDIR.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import AsyncIterable, AsyncIterator
from typing import NamedTuple

import anyio

__all__ = ["ZipEntry", "write_zip"]

# Pieces smaller than this (local headers, data descriptors, small payloads) are joined before
# they are handed on, so a study of many small instances does not cost three sends per entry.
_COALESCE = 64 << 10
# Above this many entries the central directory is written in a worker thread (it is one
# synchronous burst of about 100 bytes and a few microseconds per entry).
_THREADED_CLOSE_ENTRIES = 2000


class ZipEntry(NamedTuple):
    """One file of a streamed archive.

    Attributes:
        name: the path inside the archive, ``/``-separated (encoded as UTF-8 when not ASCII).
        chunks: the file's bytes, in order.
        size: the expected size, if known: an entry expected under 4 GiB is written without the
            ZIP64 extra; ``None`` (unknown) writes it with ZIP64 so any size fits.
        compress: deflate the entry instead of storing it.
    """

    name: str
    chunks: AsyncIterable[bytes | memoryview]
    size: int | None = None
    compress: bool = False


class _Sink:
    """The non-seekable file ``zipfile`` writes to; ``tell`` counts, so it needs no wrapper."""

    def __init__(self) -> None:
        self.position = 0
        self.ready: list[bytes | memoryview] = []
        self._small: list[bytes] = []
        self._small_size = 0

    def write(self, data: bytes | memoryview) -> int:
        size = len(data) if isinstance(data, bytes) else memoryview(data).nbytes
        self.position += size
        if size >= _COALESCE:
            self.flush_small()
            self.ready.append(data)
        elif size:
            self._small.append(bytes(data))
            self._small_size += size
            if self._small_size >= _COALESCE:
                self.flush_small()
        return size

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass  # zipfile calls it at the end; what is complete is taken with take()

    def flush_small(self) -> None:
        if self._small:
            self.ready.append(self._small[0] if len(self._small) == 1 else b"".join(self._small))
            self._small = []
            self._small_size = 0

    def take(self) -> list[bytes | memoryview]:
        out, self.ready = self.ready, []
        return out


async def write_zip(
    entries: AsyncIterable[ZipEntry], /, *, force_zip64: bool = False, modified: float | None = None
) -> AsyncIterator[bytes | memoryview]:
    """Stream a ZIP archive of ``entries``.

    Args:
        entries: the files, in archive order; each entry's chunks are read to the end before the
            next entry is asked for. Names must be unique.
        force_zip64: write every entry with the ZIP64 extra and 8-byte data descriptor, whatever
            its size (for readers that need it, and for tests).
        modified: the modification time of every entry (seconds since the epoch; default: now).
            ZIP stores local time (MS-DOS date and time, 2-second resolution).

    Yields:
        The archive's bytes. Payload chunks of 64 KB or more are passed through uncopied; smaller
        pieces (headers, descriptors, small entries) are joined until 64 KB have gathered, so a
        study of small instances goes out in 64 KB pieces rather than three sends per entry.
    """
    stamp = time.localtime(time.time() if modified is None else modified)
    date_time = (max(stamp.tm_year, 1980), *stamp[1:6])
    sink = _Sink()
    archive = zipfile.ZipFile(sink, "w", allowZip64=True)  # type: ignore[call-overload]
    count = 0
    async for entry in entries:
        info = zipfile.ZipInfo(entry.name, date_time)
        info.external_attr = 0o644 << 16  # -rw-r--r--
        if entry.compress:
            info.compress_type = zipfile.ZIP_DEFLATED
        zip64 = force_zip64 or entry.size is None
        if entry.size is not None:
            info.file_size = entry.size  # zipfile picks ZIP64 for this entry when it may pass 4 GiB
        with archive.open(info, "w", force_zip64=zip64) as out:
            async for chunk in entry.chunks:
                out.write(chunk)
                if sink.ready:
                    for piece in sink.take():
                        yield piece
        count += 1
    if count > _THREADED_CLOSE_ENTRIES:
        await anyio.to_thread.run_sync(archive.close)
    else:
        archive.close()
    sink.flush_small()
    for piece in sink.take():
        yield piece
