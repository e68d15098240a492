"""FileBlobStore: the shipped contract, plus what only a filesystem can get wrong."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from dicomweb_kit_adapters import filesystem
from dicomweb_kit_adapters.filesystem import FileBlobStore

from dicomweb_kit import InvalidRequest, ResourceNotFound, StorageUnavailable
from dicomweb_kit.testing import BlobStoreContract

pytestmark = pytest.mark.anyio

MB = 1 << 20


class TestFileBlobStore(BlobStoreContract):
    @pytest.fixture
    async def blob_store(self, tmp_path: Path) -> AsyncIterator[FileBlobStore]:
        store = FileBlobStore(tmp_path / "blobs")
        await store.open()
        yield store
        await store.aclose()
        assert _temp_files(tmp_path / "blobs") == []  # every contract case cleaned up after itself


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FileBlobStore]:
    s = FileBlobStore(tmp_path / "blobs", stale_temp_after=0)
    await s.open()
    yield s
    await s.aclose()


async def _chunks(data: bytes, size: int = 64 * 1024, pause: float | None = None) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]
        if pause is not None:
            await anyio.sleep(pause)


async def _read(store: FileBlobStore, key: str, **kw: Any) -> bytes:
    return b"".join([chunk async for chunk in store.get(key, **kw)])


def _temp_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(".tmp-*"))


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


BAD_KEYS = [
    "",
    "../x",
    "..",
    ".",
    "/etc/passwd",
    "a//b",
    "a/../b",
    "a/./b",
    "a/",
    "/a",
    "a\\b",
    "x" * 129,
    "y" * 200,
    "a\x00b",
    "a\nb",
    "ok\n",
    "a b",
    ".tmp-x",
    "a~1",
    "ünï",
    "a.b",
]


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
async def test_bad_keys_are_rejected_everywhere(tmp_path: Path, key: str) -> None:
    root = tmp_path / "store" / "blobs"
    (tmp_path / "outside").write_bytes(b"keep")
    s = FileBlobStore(root)
    await s.open()
    before = _tree(tmp_path)
    with pytest.raises(InvalidRequest):
        await s.put(key, _chunks(b"payload"))
    with pytest.raises(InvalidRequest):
        await _read(s, key)
    with pytest.raises(InvalidRequest):
        await s.exists(key)
    with pytest.raises(InvalidRequest):
        await s.delete(["fine", key])
    assert _tree(tmp_path) == before
    assert (tmp_path / "outside").read_bytes() == b"keep"
    assert issubclass(InvalidRequest, ValueError)


async def test_the_longest_keys_and_every_allowed_character_work(store: FileBlobStore) -> None:
    keys = ["k" * 128, "A" * 128, "/".join(["Zz_-9"] * 21) + "ab", "-", "_", "a/b/c"]
    for key in keys:
        assert len(key) <= 128
        await store.put(key, _chunks(key.encode()))
    assert sorted([k async for k in store.iter_keys()]) == sorted(keys)
    for key in keys:
        assert await _read(store, key) == key.encode()


async def test_keys_differing_only_in_case_get_distinct_lowercase_files(store: FileBlobStore) -> None:
    keys = ["ab", "aB", "Ab", "AB", "a/b", "A/b"]
    for i, key in enumerate(keys):
        await store.put(key, _chunks(bytes([i])))
    names = [os.path.basename(store.path_of(key)) for key in keys]
    assert len(set(names)) == len(keys)
    assert all(name == name.lower() and not name.startswith(".") for name in names)
    for i, key in enumerate(keys):
        assert await _read(store, key) == bytes([i])
    assert sorted([k async for k in store.iter_keys()]) == sorted(keys)


async def test_layout_is_sharded_by_hash(store: FileBlobStore, tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    keys = [f"{i:032x}" for i in range(600)]
    for key in keys:
        await store.put(key, _chunks(b"x"))
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) == 600
    for path in files:
        top, sub, name = path.relative_to(root).parts
        assert len(top) == len(sub) == 2 and name in keys
    # 600 keys over 256 top-level shards: spread, not piled up (the expected max is ~8).
    per_top = Counter(p.relative_to(root).parts[0] for p in files)
    assert len(per_top) > 200 and max(per_top.values()) < 20
    # Deterministic: a fresh store on the same root maps every key to the same file.
    again = FileBlobStore(root)
    assert all(again.path_of(key) == store.path_of(key) for key in keys)
    assert sorted([k async for k in again.iter_keys()]) == keys


async def test_iter_keys_skips_foreign_and_misplaced_files(store: FileBlobStore, tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    await store.put("real", _chunks(b"1"))
    (root / "index.sqlite").write_bytes(b"a neighbour")
    (root / "zz").mkdir()
    (root / "zz" / "real2").write_bytes(b"not a shard")
    shard = Path(store.path_of("real")).parent
    (shard / "UPPER").write_bytes(b"not a name we write")
    (shard / "moved-here").write_bytes(b"belongs to another shard")
    (shard / "dir-key").mkdir()
    assert [k async for k in store.iter_keys()] == ["real"]


async def test_open_sweeps_temp_files_left_by_a_crash(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    first = FileBlobStore(root)
    await first.open()
    await first.put("kept", _chunks(b"complete"))
    (root / ".tmp" / ".tmp-crashed1").write_bytes(b"half a blob")
    (root / ".tmp" / ".tmp-crashed2").write_bytes(b"")
    old = time.time() - 3600
    for name in (".tmp-crashed1", ".tmp-crashed2"):
        os.utime(root / ".tmp" / name, (old, old))
    (root / ".tmp" / ".tmp-inflight").write_bytes(b"another worker's put")

    second = FileBlobStore(root)  # default: only temp files idle for 10 minutes are stale
    await second.open()
    assert [p.name for p in _temp_files(root)] == [".tmp-inflight"]
    assert [k async for k in second.iter_keys()] == ["kept"]
    assert await second.sweep_temp_files() == 1
    assert _temp_files(root) == []
    assert await _read(second, "kept") == b"complete"


async def test_a_put_that_fails_to_write_leaves_no_temp_file(
    store: FileBlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.put("k", _chunks(b"old"))
    real_writev = os.writev
    calls = 0

    def full_disk(fd: int, buffers: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/secret/server/path")
        return real_writev(fd, buffers)

    monkeypatch.setattr(filesystem.os, "writev", full_disk)
    with pytest.raises(StorageUnavailable) as caught:
        await store.put("k", _chunks(os.urandom(3 * MB)))
    assert "No space left on device" in str(caught.value) and "/secret" not in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
    assert _temp_files(tmp_path) == []
    assert await _read(store, "k") == b"old"


async def test_short_writes_are_resumed(store: FileBlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    real_writev = os.writev

    def dribble(fd: int, buffers: Any) -> int:  # as a nearly full disk or a signal can make it
        first = next(bytes(b) for b in buffers if len(b))
        return real_writev(fd, [first[:1000]])

    monkeypatch.setattr(filesystem.os, "writev", dribble)
    data = os.urandom(300_000)
    await store.put("short", _chunks(data, size=7000))
    monkeypatch.undo()
    assert await _read(store, "short") == data


async def test_filesystem_errors_become_storage_unavailable(tmp_path: Path) -> None:
    root = tmp_path / "not-a-dir"
    root.write_bytes(b"a file where the root should be")
    s = FileBlobStore(root)
    with pytest.raises(StorageUnavailable):
        await s.open()
    with pytest.raises(StorageUnavailable):
        await s.put("k", _chunks(b"x"))
    assert not await s.exists("k")
    with pytest.raises(ResourceNotFound):
        await _read(s, "k")


async def test_a_cancelled_multi_megabyte_put_leaves_nothing(store: FileBlobStore, tmp_path: Path) -> None:
    await store.put("c", _chunks(b"previous"))
    with anyio.move_on_after(0.2):
        await store.put("c", _chunks(os.urandom(2 * MB) * 100, pause=0.005))
    assert _temp_files(tmp_path) == []
    assert await _read(store, "c") == b"previous"


async def test_put_fsyncs_the_file_and_its_directory(store: FileBlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(filesystem.os, "fsync", counting_fsync)
    await store.put("durable", _chunks(b"x" * 3 * MB))
    # The blob's bytes, then the new shard directories' parents (root, root/ab) and the blob's directory.
    assert synced == ["file", "dir", "dir", "dir"]
    synced.clear()
    await store.put("durable", _chunks(b"y"))  # directories exist now: file + its directory only
    assert synced == ["file", "dir"]

    synced.clear()
    scratch = FileBlobStore(Path(store.root).parent / "scratch", fsync=False)
    await scratch.put("fast", _chunks(b"z"))
    assert synced == []


async def test_byte_ranges_across_read_chunk_boundaries(tmp_path: Path) -> None:
    s = FileBlobStore(tmp_path / "blobs")
    data = os.urandom(5 * MB + 123)
    await s.put("big", _chunks(data, size=100_000))
    chunk_sizes = [len(c) async for c in s.get("big")]
    assert max(chunk_sizes) == MB and sum(chunk_sizes) == len(data)
    cases = [
        (0, None),
        (0, MB),
        (MB - 1, MB + 1),
        (MB, 2 * MB),
        (MB + 1, 4 * MB - 1),
        (12345, 5 * MB + 100),
        (5 * MB, None),
        (len(data) - 1, None),
        (len(data), None),
        (len(data) + 10, None),
        (3 * MB, 3 * MB),
        (4 * MB, 2 * MB),
        (2 * MB, 10 * MB),
    ]
    for start, end in cases:
        assert await _read(s, "big", start=start, end=end) == data[start:end], (start, end)
    with pytest.raises(InvalidRequest):
        await _read(s, "big", start=-1)


async def test_a_stream_in_progress_keeps_its_version(store: FileBlobStore) -> None:
    old, new = b"o" * 3 * MB, b"n" * 3 * MB
    await store.put("v", _chunks(old))
    stream = store.get("v")
    first = await stream.__anext__()
    await store.put("v", _chunks(new))
    await store.delete(["v"])
    rest = b"".join([c async for c in stream])
    assert first + rest == old


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open descriptors in /proc")
async def test_a_stream_abandoned_early_closes_its_file(store: FileBlobStore) -> None:
    await store.put("long", _chunks(b"l" * 3 * MB))
    await store.put("short", _chunks(b"s" * 1000))
    open_fds = len(os.listdir("/proc/self/fd"))
    for key in ("long", "short", "long"):
        stream = store.get(key)
        await stream.__anext__()
        await stream.aclose()
    async for _ in store.get("long", start=MB, end=MB):
        pass
    assert len(os.listdir("/proc/self/fd")) == open_fds


async def test_a_blob_truncated_behind_our_back_is_an_error_not_a_short_stream(store: FileBlobStore) -> None:
    await store.put("t", _chunks(b"t" * 3 * MB))
    stream = store.get("t")
    assert len(await stream.__anext__()) == MB
    os.truncate(store.path_of("t"), MB + 10)
    with pytest.raises(StorageUnavailable, match="shorter"):
        async for _ in stream:
            pass


async def test_more_concurrent_gets_than_read_threads(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs", read_chunk_size=1000, read_threads=2)
    blobs = {f"k{i}": os.urandom(2500 + i) for i in range(12)}
    for key, data in blobs.items():
        await store.put(key, _chunks(data))
    got: dict[str, bytes] = {}

    async def read(key: str) -> None:
        got[key] = await _read(store, key)

    async with anyio.create_task_group() as tasks:
        for key in blobs:
            tasks.start_soon(read, key)
    assert got == blobs
    assert sum(t.name == "FileBlobStore reader" for t in threading.enumerate()) >= 1


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open descriptors in /proc")
async def test_a_cancelled_get_waits_for_its_read_then_closes_the_file(store: FileBlobStore) -> None:
    await store.put("c", _chunks(b"c" * 3 * MB))
    open_fds = len(os.listdir("/proc/self/fd"))
    with anyio.move_on_after(0):
        async for _ in store.get("c"):
            pass
    assert len(os.listdir("/proc/self/fd")) == open_fds
    assert await _read(store, "c") == b"c" * 3 * MB


async def test_concurrent_puts_of_different_keys(store: FileBlobStore, tmp_path: Path) -> None:
    blobs = {f"key-{i:02d}": os.urandom(MB + i * 1000) for i in range(20)}
    async with anyio.create_task_group() as tg:
        for key, data in blobs.items():
            tg.start_soon(store.put, key, _chunks(data, pause=0))
    assert sorted([k async for k in store.iter_keys()]) == sorted(blobs)
    for key, data in blobs.items():
        assert await _read(store, key) == data
    assert _temp_files(tmp_path) == []


async def test_concurrent_puts_to_one_key_last_writer_wins_never_torn(store: FileBlobStore, tmp_path: Path) -> None:
    size = 2 * MB + 7
    versions = [bytes([i]) * size for i in range(10)]
    seen: list[bytes] = []

    async def put(i: int) -> None:
        # All streams interleave; writer i ends 30 ms after writer i-1, so the commits are ordered.
        async def stream() -> AsyncIterator[bytes]:
            async for chunk in _chunks(versions[i], size=256 * 1024, pause=0):
                yield chunk
            await anyio.sleep(0.03 * i)

        await store.put("same", stream())

    async def reader() -> None:
        for _ in range(15):
            with contextlib.suppress(ResourceNotFound):
                seen.append(await _read(store, "same"))
            await anyio.sleep(0.02)

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(put, i)
        tg.start_soon(reader)
    assert await _read(store, "same") == versions[9]
    assert seen
    for data in seen:  # every read saw one whole version
        assert data in versions
    assert _temp_files(tmp_path) == []


CRASHING_WRITER = textwrap.dedent(
    """
    import os, sys, anyio
    from dicomweb_kit_adapters.filesystem import FileBlobStore

    async def endless():
        block = os.urandom(64 * 1024)
        sent = 0
        while True:
            yield block
            sent += len(block)
            if sent == 8 * 1024 * 1024:
                print("writing", flush=True)  # some megabytes are in the temp file by now
            await anyio.sleep(0)

    async def main():
        store = FileBlobStore(sys.argv[1])
        await store.open()
        await store.put("victim", endless())

    anyio.run(main)
    """
)


@pytest.mark.parametrize("previous", [b"the previous version", None], ids=["replacing", "new"])
async def test_a_process_killed_mid_put_leaves_no_blob(tmp_path: Path, previous: bytes | None) -> None:
    root = tmp_path / "blobs"
    before = FileBlobStore(root)
    await before.put("bystander", _chunks(b"complete"))
    if previous is not None:
        await before.put("victim", _chunks(previous))
    async with await anyio.open_process([sys.executable, "-c", CRASHING_WRITER, str(root)]) as proc:
        assert proc.stdout is not None
        output = b""
        with anyio.fail_after(15):
            while b"writing" not in output:
                output += await proc.stdout.receive()
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    leftovers = _temp_files(root)
    assert len(leftovers) == 1 and leftovers[0].stat().st_size >= 4 * MB

    after = FileBlobStore(root, stale_temp_after=0)  # this process owns the root now
    assert await after.exists("victim") == (previous is not None)  # a temp file is never a blob
    await after.open()
    assert _temp_files(root) == []
    assert sorted([k async for k in after.iter_keys()]) == (["bystander", "victim"] if previous else ["bystander"])
    if previous is not None:
        assert await _read(after, "victim") == previous
    assert await _read(after, "bystander") == b"complete"
