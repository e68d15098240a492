"""Throughput of the multipart/related push parser against other parsers and the bytes.find limit.

Run ``python benchmarks/multipart_benchmark.py [--quick] [--reps N] [--case ID ...]``.

Each body is built before timing and cut into 64 KB chunks, then fed to

* ours: :class:`dicomweb_kit.codecs.multipart.MultipartParser`;
* python-multipart: ``python_multipart.MultipartParser`` with callbacks;
* multipart: ``multipart.PushMultipartParser`` (a subclass that does not demand the form-data
  Content-Disposition header, via the documented ``_create_segment`` hook);
* find-limit: ``bytes.find`` of the delimiter in a loop over the whole body as one bytes object,
  which is what any parser built on ``bytes.find`` can at best reach.

Every parser's output (part count, part sizes and a BLAKE2 hash of each part) is verified against
the input in an untimed run after the timed ones. Throughput is body bytes / best-of-N seconds.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import multipart as multipart_lib  # type: ignore[import-untyped]
import python_multipart
from _timing import best_of

from dicomweb_kit.codecs.multipart import (
    PART_END,
    MultipartLimits,
    MultipartParser,
    PartStart,
    new_boundary,
)

CHUNK = 64 * 1024
MB = 1024 * 1024
KB = 1024


@dataclass(frozen=True)
class Case:
    id: str
    parts: int
    part_size: int
    content_length: bool = False
    adversarial: bool = False
    quick_parts: int | None = None
    quick_part_size: int | None = None


CASES: tuple[Case, ...] = (
    Case("1x256MB", 1, 256 * MB, quick_part_size=32 * MB),
    Case("100x512KB", 100, 512 * KB, quick_parts=20),
    Case("2000x16KB", 2000, 16 * KB, quick_parts=400),
    Case("2000x16KB+CL", 2000, 16 * KB, content_length=True, quick_parts=400),
    Case("adversarial 4x16MB", 4, 16 * MB, adversarial=True, quick_part_size=4 * MB),
)


@dataclass(frozen=True)
class Body:
    boundary: str
    body: bytes
    chunks: list[bytes]
    digests: list[tuple[int, bytes]]  # (size, blake2b) of each part


def _digest(data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _adversarial_payload(size: int, boundary: bytes) -> bytes:
    """A payload dense with "CRLF--" + a prefix of the boundary: near-delimiters, never a delimiter."""
    unit = bytearray()
    for k in range(len(boundary)):
        unit += b"\r\n--" + boundary[:k] + b"!"
    reps = size // len(unit) + 1
    return (bytes(unit) * reps)[:size]


def build(case: Case, quick: bool) -> Body:
    parts = case.quick_parts if quick and case.quick_parts else case.parts
    size = case.quick_part_size if quick and case.quick_part_size else case.part_size
    boundary = new_boundary()
    b = boundary.encode()
    pieces: list[bytes] = []  # no preamble: python-multipart rejects one
    digests = []
    for i in range(parts):
        payload = _adversarial_payload(size, b) if case.adversarial else os.urandom(size)
        digests.append((len(payload), _digest(payload)))
        head = b"--" + b if i == 0 else b"\r\n--" + b
        head += b"\r\nContent-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\n"
        if case.content_length:
            head += b"Content-Length: %d\r\n" % len(payload)
        pieces += [head, b"\r\n", payload]
    pieces.append(b"\r\n--" + b + b"--\r\n")
    body = b"".join(pieces)
    chunks = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)]
    return Body(boundary, body, chunks, digests)


# Each runner parses the chunks and returns the part sizes; with hashing=True it returns digests too.


def run_ours(body: Body, hashing: bool = False) -> list[tuple[int, bytes]]:
    parser = MultipartParser(body.boundary, limits=MultipartLimits(max_parts=1_000_000))
    feed = parser.feed
    out: list[tuple[int, bytes]] = []
    size = 0
    h = None
    for chunk in body.chunks:
        for ev in feed(chunk):
            if ev is PART_END:
                out.append((size, h.digest() if h else b""))
            elif type(ev) is PartStart:
                size = 0
                h = hashlib.blake2b(digest_size=16) if hashing else None
            else:
                size += len(ev)  # type: ignore[arg-type]
                if h:
                    h.update(ev)  # type: ignore[arg-type]
    parser.close()
    return out


def run_python_multipart(body: Body, hashing: bool = False) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    size = 0
    h: hashlib.blake2b | None = None

    def on_part_begin() -> None:
        nonlocal size, h
        size = 0
        h = hashlib.blake2b(digest_size=16) if hashing else None

    def on_part_data(data: bytes, start: int, end: int) -> None:
        nonlocal size
        size += end - start
        if h:
            h.update(data[start:end])

    def on_part_end() -> None:
        out.append((size, h.digest() if h else b""))

    parser = python_multipart.MultipartParser(
        body.boundary,
        {"on_part_begin": on_part_begin, "on_part_data": on_part_data, "on_part_end": on_part_end},
    )
    write = parser.write
    for chunk in body.chunks:
        write(chunk)
    parser.finalize()
    return out


class _RelatedPushParser(multipart_lib.PushMultipartParser):  # type: ignore[misc]
    def _create_segment(self, headerlist: list[tuple[str, str]]) -> multipart_lib.MultipartSegment:
        return multipart_lib.MultipartSegment(headerlist)


def run_multipart(body: Body, hashing: bool = False) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    parser = _RelatedPushParser(body.boundary, max_segment_count=float("inf"))
    size = 0
    h = None
    for chunk in body.chunks:
        for ev in parser.parse(chunk):
            if ev is None:
                out.append((size, h.digest() if h else b""))
            elif type(ev) is bytes or type(ev) is bytearray:
                size += len(ev)
                if h:
                    h.update(ev)
            else:
                size = 0
                h = hashlib.blake2b(digest_size=16) if hashing else None
    parser.close()
    return out


def run_find_limit(body: Body, hashing: bool = False) -> list[tuple[int, bytes]]:
    data = body.body
    delim = b"\r\n--" + body.boundary.encode()
    find = data.find
    i = find(delim[2:])
    positions = []
    while i != -1:
        positions.append(i)
        i = find(delim, i + len(delim))
    return [(0, b"")] * (len(positions) - 1)  # only the count is meaningful


RUNNERS: dict[str, Callable[[Body, bool], list[tuple[int, bytes]]]] = {
    "ours": run_ours,
    "python-multipart": run_python_multipart,
    "multipart": run_multipart,
    "find-limit": run_find_limit,
}


def verify(name: str, body: Body) -> None:
    got = RUNNERS[name](body, True)
    ok = len(got) == len(body.digests) if name == "find-limit" else got == body.digests
    if not ok:
        raise SystemExit(f"{name}: wrong output ({len(got)} parts, expected {len(body.digests)})")


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="smaller bodies (a few seconds in all)")
    ap.add_argument("--reps", type=int, default=3, help="best of N repetitions (default 3)")
    ap.add_argument("--case", action="append", help="run only the cases with these ids")
    ap.add_argument("--only", action="append", choices=list(RUNNERS), help="run only these parsers")
    args = ap.parse_args(argv)
    names = args.only or list(RUNNERS)
    header = ["case", "MB", *[f"{n} MB/s" for n in names]]
    show_ratios = "ours" in names and "find-limit" in names
    if show_ratios:
        header.append("ours/limit")
    if "ours" in names and "python-multipart" in names:
        header.append("ours/python-multipart")
    rows = [header]
    for case in CASES:
        if args.case and case.id not in args.case:
            continue
        body = build(case, args.quick)
        mb = len(body.body) / MB
        speeds: dict[str, float] = {}
        for name in names:
            seconds = best_of(functools.partial(RUNNERS[name], body, False), args.reps)
            speeds[name] = mb / seconds
            verify(name, body)
        row = [case.id, f"{mb:.0f}", *[f"{speeds[n]:.0f}" for n in names]]
        if show_ratios:
            row.append(f"{speeds['ours'] / speeds['find-limit']:.0%}")
        if "ours" in names and "python-multipart" in names:
            row.append(f"{speeds['ours'] / speeds['python-multipart']:.1f}x")
        rows.append(row)
        print(" | ".join(row), file=sys.stderr, flush=True)
        del body
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-|-".join("-" * w for w in widths))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
