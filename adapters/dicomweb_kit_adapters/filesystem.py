"""A blob store on a local (POSIX) filesystem: one file per blob, written atomically and durably.

Built only on dicomweb-kit's public API, the way a third-party adapter would be.

Layout under ``root``::

    root/
      .tmp/.tmp-k3j9x2q1                       in-flight puts (or a crash's leftovers)
      e8/41/0c1d2e3f4a5b6c7d8e9fa0b1c2d3e4f5   the blob under key "0c1d2e3f4a5b6c7d8e9fa0b1c2d3e4f5"
      7e/50/study.a~41                         the blob under key "Study/A" (see File name)
      tenants/acme/...                         tenant "acme"'s blobs, the same layout (for_tenant)

* **Shard directories.** ``blake2s(key)`` (2-byte digest) as hex ``abcd`` puts the blob in
  ``root/ab/cd/``: 65,536 leaf directories, spread uniformly whatever the keys look like, so no
  directory grows past a few thousand entries before the archive holds ~100 million blobs.
* **File name.** The key, reversibly and injectively encoded so ``iter_keys`` can return it: letters
  are lower-cased, ``/`` becomes ``.`` (not in the key alphabet), and if the key had upper-case
  letters, ``~`` plus the hex bit mask of their positions is appended (``Study/A`` ->
  ``study.a~41``). Every name is thus all lower-case, so two keys that differ only in case do not
  collide on a case-insensitive filesystem (macOS, Windows), and a name never starts with ``.``
  (key segments are non-empty), so it can never be taken for a temp file. Names are at most
  128 + 33 characters, well under the usual 255-byte limit.
* **Temp files** live in ``root/.tmp/`` (same filesystem, so the final ``os.replace`` is an atomic
  rename) rather than next to their target: sweeping crash leftovers at startup then costs
  O(in-flight puts) instead of a walk over 65,536 shard directories.

Files are created with mode 0600 (``tempfile.mkstemp``): instance bytes are patient data.

Keys are validated strictly (``[A-Za-z0-9_-]`` segments joined by single ``/``, 1 to 128
characters) before any path is built, and the path is assembled from the hash and the encoded
name only, so no key can address anything outside ``root``.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import hashlib
import os
import re
import stat
import sys
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from functools import partial
from typing import TypeVar

import anyio

from dicomweb_kit import (
    BlobInfo,
    InvalidRequest,
    ResourceNotFound,
    StorageUnavailable,
    WorkerThreads,
    validate_tenant,
)

__all__ = ["FileBlobStore"]

_T = TypeVar("_T")

_KEY = re.compile(r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*")
_MAX_KEY = 128
_NAME = re.compile(r"[a-z0-9_.-]+(?:~[0-9a-f]+)?")
_SHARD = re.compile(r"[0-9a-f]{2}")
_TEMP_DIR = ".tmp"
_TENANTS_DIR = "tenants"  # not a shard name: iter_keys of the root never walks into it
_TEMP_PREFIX = ".tmp-"
_MB = 1 << 20
# Buffers per writev() call: under every platform's IOV_MAX (1024 on Linux and macOS).
_IOV_BATCH = 512


def _check_key(key: object) -> str:
    if not isinstance(key, str) or len(key) > _MAX_KEY or _KEY.fullmatch(key) is None:
        # repr() of a hostile key is bounded: keys come from the core, but never trust that.
        raise InvalidRequest(f"invalid blob key {str(key)[: _MAX_KEY + 8]!r}")
    return key


def _encode(key: str) -> str:
    mask = 0
    for i, ch in enumerate(key):
        if "A" <= ch <= "Z":
            mask |= 1 << i
    name = key.lower().replace("/", ".")
    return f"{name}~{mask:x}" if mask else name


def _decode(name: str) -> str | None:
    """The key stored under file name ``name``, or None if it is not a name we would write."""
    if _NAME.fullmatch(name) is None:
        return None
    base, _, mask_hex = name.partition("~")
    mask = int(mask_hex, 16) if mask_hex else 0
    key = "".join(ch.upper() if mask >> i & 1 else ch for i, ch in enumerate(base)).replace(".", "/")
    # Round-trip to reject anything we would not have produced (non-canonical masks, bad keys).
    if len(key) > _MAX_KEY or _KEY.fullmatch(key) is None or _encode(key) != name:
        return None
    return key


def _shard(key: str) -> tuple[str, str]:
    digest = hashlib.blake2s(key.encode("ascii"), digest_size=2).hexdigest()
    return digest[:2], digest[2:]


def _sync_fd(fd: int) -> None:
    # On macOS fsync() only reaches the drive's cache; F_FULLFSYNC asks it to write to media.
    if sys.platform == "darwin":
        import fcntl

        try:
            fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
            return
        except OSError:
            pass  # not supported by this filesystem: fsync() is the best there is
    os.fsync(fd)


def _start_writeback(fd: int) -> None:
    """Ask the kernel to start writing the file's dirty pages now, without waiting (Linux: an
    fadvise DONTNEED starts writeback of dirty pages and drops only clean ones)."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        with contextlib.suppress(OSError):
            advise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _sync_dir(path: str) -> None:
    """Make the directory entries of ``path`` (a new or renamed file in it) durable."""
    if os.name == "nt":  # directories cannot be opened (nor need to be synced) on Windows
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        _sync_fd(fd)
    finally:
        os.close(fd)


def _views_bytes(chunk: bytes | memoryview) -> bool:
    return type(chunk) is memoryview and type(chunk.obj) is bytes


def _write_all(fd: int, pieces: list[bytes | memoryview]) -> None:
    """Write ``pieces`` in order with as few syscalls as possible and no copy (``writev``)."""
    if not hasattr(os, "writev"):  # Windows
        for piece in pieces:
            view = memoryview(piece)
            while view:
                view = view[os.write(fd, view) :]
        return
    for i in range(0, len(pieces), _IOV_BATCH):
        views = [memoryview(p) for p in pieces[i : i + _IOV_BATCH]]
        while views:
            written = os.writev(fd, views)
            # A short write (disk nearly full, signals) stops anywhere: resume from that byte.
            done = 0
            while done < len(views) and written >= len(views[done]):
                written -= len(views[done])
                done += 1
            views = views[done:]
            if written:
                views[0] = views[0][written:]


#: Ranged reads up to this size (a 512x512 16-bit frame, a header) are tried on the event loop, from the
#: page cache only (``RWF_NOWAIT``): a hit costs microseconds, where the hop to a reader thread
#: and back costs ~0.1 ms and two wake-ups. A miss (or no RWF_NOWAIT) takes the thread.
_INLINE_READ_MAX = 1 << 20
_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)


def _read_if_cached(path: str, start: int, size: int) -> bytes | None:
    """``size`` bytes at ``start`` if the page cache holds them all (and the file is that long)."""
    if _RWF_NOWAIT is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None  # the thread path reports it properly
    try:
        buffer = bytearray(size)
        got = os.preadv(fd, [buffer], start, _RWF_NOWAIT)
    except OSError:  # EAGAIN: not cached; EOPNOTSUPP: a filesystem without RWF_NOWAIT
        return None
    finally:
        os.close(fd)
    return bytes(buffer) if got == size else None


def _read_exactly(fd: int, size: int) -> bytes:
    data = os.read(fd, size)
    while len(data) < size:  # short reads happen on some filesystems (FUSE, network): read on
        more = os.read(fd, size - len(data))
        if not more:
            # Only someone editing the store's files by hand can shrink a committed blob.
            raise OSError(errno.EIO, "blob file is shorter than when it was opened")
        data += more
    return data


class _Temp:
    """The temp file of one put; created lazily by the first thread hop that writes."""

    __slots__ = ("fd", "path", "size")

    def __init__(self) -> None:
        self.fd: int | None = None
        self.path: str | None = None
        self.size = 0


class FileBlobStore:
    """Blobs as files under ``root`` (see the module docstring for the layout).

    Args:
        root: the directory to keep blobs in; created (with parents) when first needed.
        read_chunk_size: bytes read per thread hop in ``get`` (and the size of the chunks it yields).
        write_buffer_size: bytes of a put's stream gathered on the event loop before one thread
            hop writes them; a thread hop per 64 KB chunk costs more than the write itself.
        fsync: flush each blob (and its directory entry) to stable storage before ``put``
            returns. Turn off only for scratch stores: a power loss can then lose acknowledged blobs.
        stale_temp_after: seconds since its last write after which ``open()`` takes a temp file
            for a crash's leftover and removes it. Several processes (server workers) may share a
            root, and a put in flight in another process must not lose its temp file, so the
            default leaves recent ones alone; 0 is right when one process owns the root.
        read_threads: at most this many threads read for ``get`` at once (started on demand,
            ended when idle); further reads queue. They hop far faster than anyio's thread pool,
            which matters when a retrieve streams thousands of small blobs.
        write_threads: at most this many threads write, rename, fsync and delete at once (the
            same kind of pool). ``sync`` hands each file's fsync to its own thread: concurrent
            fsyncs share the filesystem's journal commits.

    ``get`` reads from a file opened when iteration starts, so a blob replaced or deleted while
    it is streamed still streams the version that was there. A cancellation that arrives while
    the final rename runs takes effect after it: the blob is then complete and visible.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        read_chunk_size: int = _MB,
        write_buffer_size: int = _MB,
        fsync: bool = True,
        stale_temp_after: float = 600.0,
        read_threads: int = 16,
        write_threads: int = 32,
    ) -> None:
        if min(read_chunk_size, write_buffer_size, read_threads, write_threads) <= 0:
            raise ValueError("read_chunk_size, write_buffer_size, read_threads and write_threads must be positive")
        self.root = os.path.abspath(os.fspath(root))
        self._temp_dir = os.path.join(self.root, _TEMP_DIR)
        self._read_chunk = read_chunk_size
        self._write_buffer = write_buffer_size
        self._fsync = fsync
        # Parents of shard directories made by non-durable puts: the next sync() syncs them.
        self._unsynced_dirs: set[str] = set()
        self._stale_temp_after = stale_temp_after
        self._readers = WorkerThreads(read_threads, name="FileBlobStore reader")
        self._writers = WorkerThreads(write_threads, name="FileBlobStore writer")
        self._tenants: dict[str, FileBlobStore] = {}

    def for_tenant(self, tenant: str, /) -> FileBlobStore:
        """The blobs of ``tenant``, under ``<root>/tenants/<tenant>`` with the same layout and
        settings (:class:`dicomweb_kit.tenancy.TenantScoped`); it shares this store's threads.
        A tenant's data is one directory: moved, backed up or removed as one."""
        found = self._tenants.get(tenant)
        if found is None:
            found = copy.copy(self)
            found.root = os.path.join(self.root, _TENANTS_DIR, validate_tenant(tenant))
            found._temp_dir = os.path.join(found.root, _TEMP_DIR)
            found._unsynced_dirs, found._tenants = set(), {}
            self._tenants[tenant] = found
        return found

    def __repr__(self) -> str:
        return f"FileBlobStore({self.root!r})"

    def path_of(self, key: str) -> str:
        """The file that holds (or would hold) the blob under ``key``; raises InvalidRequest."""
        _check_key(key)
        top, sub = _shard(key)
        return os.path.join(self.root, top, sub, _encode(key))

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Startup hook: create the root and remove temp files left by a crash."""
        await self._run(lambda: os.makedirs(self._temp_dir, exist_ok=True), "cannot create the store root")
        await self.sweep_temp_files(self._stale_temp_after)

    async def aclose(self) -> None:
        pass  # no handles outlive a call

    async def sweep_temp_files(self, older_than_seconds: float = 0) -> int:
        """Remove temp files not written to for ``older_than_seconds``; return how many.

        A temp file is a put that never finished (the process died mid-write); it was never
        visible as a blob. With the default 0 this also removes the temp files of puts in flight
        (those puts then fail with StorageUnavailable), so use 0 only when no put can be running
        on this root, in this process or another.
        """

        def sweep() -> int:
            cutoff = time.time() - older_than_seconds
            removed = 0
            try:
                entries = list(os.scandir(self._temp_dir))
            except FileNotFoundError:
                return 0
            for entry in entries:
                if not entry.name.startswith(_TEMP_PREFIX):
                    continue
                try:
                    if entry.stat(follow_symlinks=False).st_mtime <= cutoff:
                        os.unlink(entry.path)
                        removed += 1
                except FileNotFoundError:
                    pass  # its put finished or failed and cleaned up meanwhile
            return removed

        return await self._run(sweep, "cannot sweep temp files")

    # -- the BlobStore protocol ------------------------------------------------------------

    async def put(self, key: str, chunks: AsyncIterable[bytes | memoryview], /, *, durable: bool = True) -> BlobInfo:
        path = self.path_of(key)
        temp = _Temp()
        pending: list[bytes | memoryview] = []
        pending_size = 0
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                # A memoryview may point into a buffer its producer reuses after the next
                # iteration, so keep a copy, unless it views immutable bytes (the multipart
                # reader's parts do): those are kept as they are, like bytes.
                piece = chunk if type(chunk) is bytes or _views_bytes(chunk) else bytes(chunk)
                pending.append(piece)
                pending_size += len(piece)
                if pending_size >= self._write_buffer:
                    await self._run(partial(self._write, temp, pending), f"cannot write blob {key!r}")
                    pending, pending_size = [], 0
            commit = partial(self._commit, temp, pending, path, durable=durable and self._fsync)
            await self._run(commit, f"cannot write blob {key!r}")
        except BaseException:
            # Failure, client gone or cancelled: drop the temp file. Shielded, or a cancellation
            # would stop the cleanup it triggered. A previous blob under key was never touched.
            with anyio.CancelScope(shield=True):
                await self._writers.run(partial(self._discard, temp))
            raise
        return BlobInfo(key=key, size=temp.size)

    async def sync(self, keys: Sequence[str], /) -> None:
        """fsync the files and then their directories, many at once: concurrent fsyncs share the
        filesystem's journal commits, several times faster than one fsync pair per put."""
        if not self._fsync or not keys:
            return

        def sync_file(path: str) -> str | None:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                return None  # never stored, or deleted since: nothing to make durable
            try:
                _sync_fd(fd)
            finally:
                os.close(fd)
            return os.path.dirname(path)

        paths = [self.path_of(key) for key in keys]
        synced = await self._run_all([partial(sync_file, path) for path in paths], "cannot sync blobs")
        # New shard directories need their own entries made durable in their parents. Entries stay
        # in the set until synced, so a concurrent sync() never returns before they are.
        parents = set(self._unsynced_dirs)
        directories = sorted({d for d in synced if d is not None} | parents)
        await self._run_all([partial(_sync_dir, d) for d in directories], "cannot sync blobs")
        self._unsynced_dirs -= parents

    async def get(self, key: str, /, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self.path_of(key)
        if start < 0 or (end is not None and end < 0):
            raise InvalidRequest(f"invalid byte range {start}-{end}")

        chunk = self._read_chunk

        def open_and_read_first() -> tuple[int | None, bytes, int]:
            # One hop opens, sizes and reads the first chunk, and closes too when that was all:
            # a get of a blob up to read_chunk_size bytes costs a single thread hop.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            try:
                # Committed files are never written again (a put renames a new file over them),
                # so the size seen here is the size of everything this stream will read.
                size = os.fstat(fd).st_size
                remaining = max((size if end is None else min(end, size)) - start, 0)
                first = b""
                if remaining:
                    os.lseek(fd, start, os.SEEK_SET)
                    first = _read_exactly(fd, min(chunk, remaining))
                    remaining -= len(first)
            except BaseException:
                os.close(fd)
                raise
            if not remaining:
                os.close(fd)
                return None, first, 0
            return fd, first, remaining

        if end is not None and 0 < end - start <= _INLINE_READ_MAX:
            cached = _read_if_cached(path, start, end - start)
            if cached is not None:
                yield cached
                return
        try:
            fd, first, remaining = await self._readers.run(open_and_read_first)
        except (FileNotFoundError, NotADirectoryError):
            raise ResourceNotFound(f"blob {key!r} is not stored") from None
        except OSError as exc:
            raise _unavailable(f"cannot read blob {key!r}", exc) from exc
        try:
            if first:
                yield first  # the consumer may stop here: the finally closes what is still open
            while remaining:
                assert fd is not None
                try:
                    data = await self._readers.run(partial(_read_exactly, fd, min(chunk, remaining)))
                except OSError as exc:
                    raise _unavailable(f"cannot read blob {key!r}", exc) from exc
                remaining -= len(data)
                yield data
        finally:
            # Closing a read-only descriptor does no I/O, so it is done right here: no await in
            # a finally that may run while the generator is being closed.
            if fd is not None:
                os.close(fd)

    async def exists(self, key: str, /) -> bool:
        path = self.path_of(key)

        def check() -> bool:
            try:
                return stat.S_ISREG(os.stat(path).st_mode)
            except (FileNotFoundError, NotADirectoryError):
                return False

        return await self._run(check, f"cannot look up blob {key!r}")

    async def iter_keys(self) -> AsyncIterator[str]:
        def list_dir(path: str, pattern: re.Pattern[str]) -> list[str]:
            try:
                return sorted(e.name for e in os.scandir(path) if e.is_dir() and pattern.fullmatch(e.name))
            except FileNotFoundError:
                return []

        def keys_under(top: str) -> list[str]:
            # One thread hop per top-level shard (256 in all): at most ~1/256 of the keys each.
            found = []
            for sub in list_dir(os.path.join(self.root, top), _SHARD):
                try:
                    entries = list(os.scandir(os.path.join(self.root, top, sub)))
                except FileNotFoundError:
                    continue
                for entry in entries:
                    key = _decode(entry.name)
                    # Skip what we did not write: foreign files, or a file moved to another shard.
                    if key is not None and _shard(key) == (top, sub) and entry.is_file():
                        found.append(key)
            return found

        tops = await self._run(lambda: list_dir(self.root, _SHARD), "cannot list blobs")
        for top in tops:
            for key in await self._run(partial(keys_under, top), "cannot list blobs"):
                yield key

    async def delete(self, keys: Sequence[str], /) -> None:
        paths = [self.path_of(key) for key in keys]  # validate all before deleting any

        def remove() -> None:
            for path in paths:
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    os.unlink(path)
            # Deletes are not fsynced and shard directories are kept: a delete undone by a power
            # loss leaves an orphan blob for the consistency sweep, and removing a directory
            # would race a concurrent put into it.

        await self._run(remove, "cannot delete blobs")

    # -- thread-side helpers ---------------------------------------------------------------

    def _open_temp(self, temp: _Temp) -> int:
        if temp.fd is None:
            try:
                temp.fd, temp.path = tempfile.mkstemp(dir=self._temp_dir, prefix=_TEMP_PREFIX)
            except FileNotFoundError:  # first put before open(), or the directory was removed
                os.makedirs(self._temp_dir, exist_ok=True)
                temp.fd, temp.path = tempfile.mkstemp(dir=self._temp_dir, prefix=_TEMP_PREFIX)
        return temp.fd

    def _write(self, temp: _Temp, pieces: list[bytes | memoryview]) -> None:
        _write_all(self._open_temp(temp), pieces)
        temp.size += sum(map(len, pieces))

    def _commit(self, temp: _Temp, pieces: list[bytes | memoryview], path: str, *, durable: bool) -> None:
        self._write(temp, pieces)
        assert temp.fd is not None and temp.path is not None
        if durable:
            _sync_fd(temp.fd)  # the bytes are on disk before the name points at them
        elif self._fsync:
            _start_writeback(temp.fd)  # so the group's sync() later waits less
        fd, temp.fd = temp.fd, None
        os.close(fd)
        directory = os.path.dirname(path)
        self._make_dirs(directory, durable=durable)
        os.replace(temp.path, path)
        temp.path = None  # committed: nothing left to discard
        if durable:
            _sync_dir(directory)  # ...and the name itself survives a power loss

    def _make_dirs(self, directory: str, *, durable: bool = True) -> None:
        """Create ``directory`` and missing parents, syncing each parent so the new entries last
        (for a non-durable put: remembering the parent for the next ``sync``)."""
        if os.path.isdir(directory):
            return
        parent = os.path.dirname(directory)
        self._make_dirs(parent, durable=durable)
        # FileExistsError: a concurrent put made it and may not have synced the parent yet, so
        # sync it here too rather than return early.
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory)
        if durable:
            _sync_dir(parent)
        elif self._fsync:
            self._unsynced_dirs.add(parent)

    @staticmethod
    def _discard(temp: _Temp) -> None:
        if temp.fd is not None:
            fd, temp.fd = temp.fd, None
            with contextlib.suppress(OSError):
                os.close(fd)
        if temp.path is not None:
            path, temp.path = temp.path, None
            # If this fails, a later sweep removes the file; the original error is the one to report.
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def _run(self, func: Callable[[], _T], what: str) -> _T:
        # Never abandoned on cancel (the hop is shielded): a cancelled put must wait for its write
        # hop to finish before the cleanup closes the descriptor that hop is using.
        try:
            return await self._writers.run(func)
        except OSError as exc:
            raise _unavailable(what, exc) from exc

    async def _run_all(self, funcs: Sequence[Callable[[], _T]], what: str) -> list[_T]:
        try:
            return await self._writers.run_all(funcs)
        except OSError as exc:
            raise _unavailable(what, exc) from exc


def _unavailable(what: str, exc: OSError) -> StorageUnavailable:
    # The message may reach a client (DicomWebError is shown as is): name the key and the
    # errno's text, never a server path; the OSError, with its path, is chained for the logs.
    reason = exc.strerror or errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    return StorageUnavailable(f"file blob store: {what}: {reason}")
