"""WADO-RS pixel paths against the machine's own limits, in one run.

    python benchmarks/pixels_benchmark.py            # full sizes (about a minute)
    python benchmarks/pixels_benchmark.py --quick    # smaller study for the zip case

Three cases, each printed beside a reference measured on the same bytes:

1. One frame of a 500-frame instance (JPEG Baseline, and native 16-bit) through
   ``services.frames.read_frame`` on files + SQLite, against ``os.pread`` of exactly those bytes
   from the stored blob file (the floor for any server), and the bytes the store was asked for.
2. A rendered JPEG of a 512x512 CT frame through the rendering service (read, decode, modality
   LUT, window, encode), against Pillow encoding the already-windowed 8-bit image alone.
3. A zip of a ~1 GB study streamed by ``services.archive`` from the file store, against reading
   the same blob files to /dev/null; MB/s, and the peak RSS of the process that built it.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pydicom
from dicomweb_kit_adapters.filesystem import FileBlobStore
from dicomweb_kit_adapters.sql import SqlIndex
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _pixel_cases import MULTIFRAME_FRAMES, PICKED_FRAME, jpeg_multiframe, multiframe_dataset

from dicomweb_kit import DicomWeb, ResourceKey
from dicomweb_kit.pixels.render import RenderParams, display_array
from dicomweb_kit.services import archive, frames, rendering
from dicomweb_kit.services.ingest import ingest_instance

MB = 1_000_000


def native_multiframe(frames_: int = MULTIFRAME_FRAMES, size: int = 256) -> bytes:
    """A Part 10 instance of ``frames_`` native 16-bit frames."""
    rng = np.random.default_rng(3)
    ds = multiframe_dataset("1.2.840.10008.5.1.4.1.1.7.3", ExplicitVRLittleEndian, frames_, size, bits=16)
    ds.PixelData = rng.integers(0, 4096, size=(frames_, size, size), dtype=np.uint16).tobytes()
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


class RangeLog:
    """A blob store wrapper that records the byte ranges asked for (proof that one frame is read)."""

    def __init__(self, store: FileBlobStore) -> None:
        self.store = store
        self.bytes_asked = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def get(self, key: str, /, *, start: int = 0, end: int | None = None) -> Any:
        self.bytes_asked += (end if end is not None else 1 << 62) - start
        return self.store.get(key, start=start, end=end)


async def _chunks(data: bytes) -> Any:
    yield data


async def timed(work: Callable[[], Awaitable[object]], reps: int) -> float:
    """Median seconds of ``reps`` runs after two warm-ups."""
    for _ in range(2):
        await work()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        await work()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def timed_sync(work: Callable[[], object], reps: int) -> float:
    for _ in range(2):
        work()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        work()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def row(name: str, ours: float, reference: float, ref_name: str) -> None:
    print(f"| {name} | {ours * 1000:.3f} ms | {reference * 1000:.3f} ms ({ref_name}) | {ours / reference:.2f}x |")


async def frame_cases(kit: DicomWeb, store: FileBlobStore, log: RangeLog, reps: int) -> None:
    for label, blob in (("JPEG Baseline", jpeg_multiframe()[0]), ("native 16-bit", native_multiframe())):
        stored = await ingest_instance(kit, _chunks(blob))
        record = stored.record
        key = record.key
        frame = await frames.read_frame(kit, key, PICKED_FRAME)
        source = await frames.pixel_source(kit, record)
        assert source is not None
        span = source.span(PICKED_FRAME)
        path = store.path_of(record.blob_key)
        ranges = list(span.ranges)
        fd = os.open(path, os.O_RDONLY)
        try:

            def pread(fd: int = fd, ranges: list[tuple[int, int]] = ranges) -> bytes:
                return b"".join(os.pread(fd, n, o) for o, n in ranges)

            def ours_read(key: ResourceKey = key) -> Awaitable[object]:
                return frames.read_frame(kit, key, PICKED_FRAME)

            assert pread() == frame.data, "read_frame and pread disagree"
            ours = await timed(ours_read, reps)
            floor = timed_sync(pread, reps)
        finally:
            os.close(fd)
        log.bytes_asked = 0
        await frames.read_frame(kit, key, PICKED_FRAME)
        asked = log.bytes_asked
        row(f"frame {PICKED_FRAME} of {MULTIFRAME_FRAMES} ({label}, {len(frame.data)} B)", ours, floor, "os.pread")
        print(
            f"|   bytes asked of the store for that frame | {asked:,} | of a {record.size:,} B blob |"
            f" {asked / record.size:.4%} |"
        )


async def rendered_case(kit: DicomWeb, ct_file: Path, reps: int) -> None:
    stored = await ingest_instance(kit, _chunks(await anyio.Path(ct_file).read_bytes()))
    record = await kit.index.get(stored.record.key)
    assert record is not None
    params = RenderParams()

    async def ours() -> bytes:
        return await rendering.InstanceImages(kit, record).encode(1, params, "image/jpeg")

    jpeg = await ours()
    assert jpeg.startswith(b"\xff\xd8")
    ds = pydicom.dcmread(ct_file)
    display = display_array(ds.pixel_array, ds)
    image = Image.fromarray(display)

    def pillow() -> bytes:
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=90)
        return out.getvalue()

    row("rendered JPEG, 512x512 CT", await timed(ours, reps), timed_sync(pillow, reps), "Pillow JPEG encode alone")


def zip_case(quick: bool) -> None:
    """One child process builds the study (kept for later runs), another zips it, so the second
    one's peak RSS is the zip's alone (interpreter and imports included)."""
    count = 100 if quick else 2000
    data = Path(tempfile.gettempdir()) / "dwk-bench" / f"zip-study-{count}"
    for step in ("--zip-build", "--zip-run"):
        command = [sys.executable, __file__, step, str(data), "--count", str(count)]
        out = subprocess.run(command, capture_output=True, text=True)
        print(out.stdout, end="")
        if out.returncode:
            raise SystemExit(f"the zip case failed:\n{out.stderr}")


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not ``getrusage``'s ru_maxrss: Linux carries that
    over from the parent across fork and exec, so a child would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: the best there is


def _kit(data: Path) -> DicomWeb:
    return DicomWeb(blobs=FileBlobStore(data / "blobs"), index=SqlIndex(f"sqlite:///{data / 'index.sqlite3'}"))


def read_all(paths: list[str]) -> float:
    """Seconds to read every file to nowhere, 1 MB at a time (the floor of any zip from these files)."""
    t0 = time.perf_counter()
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 20):
                pass
    return time.perf_counter() - t0


ZIP_STUDY = "1.2.826.0.1.3680043.8.498.1"


async def zip_build(data: Path, count: int) -> None:
    """A study of ``count`` 512x512 16-bit CT-like instances (526 KB each), built once and kept."""
    if await anyio.Path(data / "complete").exists():
        return
    await anyio.to_thread.run_sync(lambda: shutil.rmtree(data, ignore_errors=True))
    async with _kit(data) as kit:
        series = [f"{ZIP_STUDY}.{n}" for n in range(1, 9)]
        rng = np.random.default_rng(1)
        pixels = rng.integers(0, 4096, size=(512, 512), dtype=np.uint16).tobytes()
        for i in range(count):
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
            ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.2.{i + 1}"
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
            ds.StudyInstanceUID, ds.SeriesInstanceUID = ZIP_STUDY, series[i * len(series) // count]
            ds.PatientID, ds.Modality, ds.InstanceNumber = "ZIP", "CT", i + 1
            ds.Rows = ds.Columns = 512
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
            ds.PixelData = pixels
            buffer = io.BytesIO()
            pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
            await ingest_instance(kit, _chunks(buffer.getvalue()))
    await anyio.Path(data / "complete").write_text("yes")


async def zip_run(data: Path) -> None:
    async with _kit(data) as kit:
        scope = ResourceKey(ZIP_STUDY)
        records = [r async for r in kit.index.records(scope)]
        paths = [kit.blobs.path_of(r.blob_key) for r in records]  # type: ignore[attr-defined]
        total = sum(r.size for r in records)
        del records
        await anyio.to_thread.run_sync(read_all, paths)  # warm the page cache, for both runs alike
        floor = await anyio.to_thread.run_sync(read_all, paths)
        rss_before = peak_rss_mb()
        plan = await archive.plan_archive(kit, scope, "application/zip")
        t0 = time.perf_counter()
        written = 0
        async for piece in archive.archive_body(kit, plan):
            written += len(piece)
        ours = time.perf_counter() - t0
        rss_after = peak_rss_mb()
    print(
        f"| zip of a {total / MB:.0f} MB study ({len(paths)} instances) | {written / MB / ours:.0f} MB/s |"
        f" {total / MB / floor:.0f} MB/s (read the blob files) | {floor / ours:.2f}x |"
    )
    print(f"|   peak RSS of the zipping process | {rss_after:.0f} MB | {rss_before:.0f} MB before the zip | |")



async def main_async(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="dwk-pixbench-"))
    try:
        store = FileBlobStore(work / "blobs")
        log = RangeLog(store)
        kit = DicomWeb(blobs=log, index=SqlIndex(f"sqlite:///{work / 'index.sqlite3'}"))  # type: ignore[arg-type]
        async with kit:
            print("| case | ours | reference | ours/reference |")
            print("|---|---|---|---|")
            await frame_cases(kit, store, log, args.reps)
            corpora = Path("/tmp/dwk-bench")
            ct = sorted(await anyio.to_thread.run_sync(lambda: list(corpora.glob("corpus-ct-*/**/*.dcm"))))
            if not ct:
                raise SystemExit("no CT corpus: run benchmarks/server_benchmark.py --quick once to build one")
            await rendered_case(kit, ct[0], args.reps)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    zip_case(args.quick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 50 MB study for the zip case instead of ~1 GB")
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--zip-build", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--zip-run", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=2000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.zip_build:
        anyio.run(zip_build, args.zip_build, args.count)
    elif args.zip_run:
        anyio.run(zip_run, args.zip_run)
    else:
        anyio.run(main_async, args)


if __name__ == "__main__":
    main()
