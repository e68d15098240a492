"""The streaming multipart/related codec: real bodies, chunk splits, limits, malformed input, writer."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable, Sequence

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dicomweb_kit.codecs.multipart import (
    PART_END,
    MultipartLimits,
    MultipartParser,
    PartStart,
    boundary_from_content_type,
    multipart_content_type,
    multipart_length,
    new_boundary,
    parse_media_type,
    read_multipart,
    write_multipart,
)
from dicomweb_kit.errors import InvalidRequest, MalformedMultipart, PayloadTooLarge, UnsupportedMediaType


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


Parsed = list[tuple[dict[str, str], bytes]]


def parse_sync(body: bytes, boundary: str, step: int | Sequence[int] | None = None, **limits: int) -> Parsed:
    """Parse with the push parser, cutting the body every ``step`` bytes (or at the given offsets)."""
    parser = MultipartParser(boundary, limits=MultipartLimits(**limits))
    out: Parsed = []
    open_part = False
    for chunk in _cut(body, step):
        for ev in parser.feed(chunk):
            if type(ev) is PartStart:
                assert not open_part
                out.append((ev.headers, b""))
                open_part = True
            elif ev is PART_END:
                assert open_part
                open_part = False
            else:
                assert open_part
                assert isinstance(ev, memoryview | bytes) and len(ev) > 0
                out[-1] = (out[-1][0], out[-1][1] + bytes(ev))
    parser.close()
    assert not open_part
    return out


def _cut(body: bytes, step: int | Sequence[int] | None) -> Iterable[bytes]:
    if step is None:
        return [body]
    if isinstance(step, int):
        return [body[i : i + step] for i in range(0, len(body), step)]
    cuts = [0, *sorted(c for c in step if 0 < c < len(body)), len(body)]
    return [body[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


async def aiter_chunks(body: bytes, step: int | None = None) -> AsyncIterator[bytes]:
    for chunk in _cut(body, step):
        yield chunk


async def parse_async(body: bytes, boundary: str, step: int | None = None, **limits: int) -> Parsed:
    out: Parsed = []
    async for part in read_multipart(aiter_chunks(body, step), boundary, limits=MultipartLimits(**limits)):
        out.append((part.headers, b"".join([bytes(c) async for c in part.chunks()])))
    return out


def payloads(parsed: Parsed) -> list[bytes]:
    return [p for _, p in parsed]


def make_body(
    boundary: str, parts: Sequence[tuple[Sequence[tuple[str, str]], bytes]], *, close: bytes = b"\r\n"
) -> bytes:
    b = boundary.encode()
    out = []
    for i, (headers, payload) in enumerate(parts):
        out.append((b"--" if i == 0 else b"\r\n--") + b + b"\r\n")
        out += [f"{k}: {v}\r\n".encode() for k, v in headers]
        out += [b"\r\n", payload]
    out.append(b"\r\n--" + b + b"--" + close)
    return b"".join(out)


# ---------------------------------------------------------------------------------------------- real bodies

DICOM = b"\x00" * 128 + b"DICM" + os.urandom(300) + b"\r\n--MESSAGEBOUNDAR\r\n-" + os.urandom(50)
TUTORIAL = (
    b"--MESSAGEBOUNDARY\r\nContent-Length: %d\r\nContent-Type: application/dicom\r\n\r\n" % len(DICOM)
    + DICOM
    + b"\r\n--MESSAGEBOUNDARY--"
)
ORTHANC_BOUNDARY = "6b0b5a5b-6d3c-4c0e-9b5f-1f8f6c2d3a4b-0e3f2a1c-5d4b-4a3e-8f7d-6c5b4a392817"
ORTHANC_CT = f"multipart/related; type=application/dicom; boundary={ORTHANC_BOUNDARY}"
ORTHANC = make_body(
    ORTHANC_BOUNDARY,
    [
        ([("Content-Type", "application/dicom"), ("Content-Length", str(len(DICOM)))], DICOM),
        ([("Content-Type", "application/dicom"), ("Content-Length", "7")], b"second!"),
    ],
    close=b"",
)
SPECIAL_BOUNDARY = "gc0p4Jq0M2Yt08j34c0p'()+_,-./:=? x"
SPECIAL = make_body(
    SPECIAL_BOUNDARY,
    [([("Content-Type", "application/dicom")], DICOM), ([("Content-Type", "application/dicom+xml")], b"<x/>")],
)
PREAMBLE_EPILOGUE = b"This is the preamble; ignore it. --B is not a delimiter here.\r\n" + make_body(
    "B", [([("Content-Type", "text/plain")], b"one"), ([], b"two")], close=b"\r\nThe epilogue.\r\n--B\r\n"
)
PADDED = (
    b"--B \t \r\nContent-Type: a/b\r\n\r\nfirst\r\n--B\t\r\nContent-Length: 6\r\n\r\nsecond\r\n--B  \r\n\r\nthird"
    b"\r\n--B-- \r\n"
)
HEADER_FORMS = (
    b"--B\r\nCONTENT-TYPE: application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\ncontent-LENGTH:3\r\n"
    b"Content-Location:  http://x/studies/1 \r\nX-Folded: a\r\n  b\r\nX-Twice: 1\r\nx-twice: 2\r\n\r\nabc"
    b"\r\n--B--\r\n"
)
EMPTY_PARTS = b"--B\r\n\r\n\r\n--B\r\nContent-Length: 0\r\n\r\n\r\n--B\r\nContent-Type: a/b\r\n\r\n\r\n--B--"

REAL_BODIES = {
    "tutorial": (TUTORIAL, "MESSAGEBOUNDARY", [DICOM]),
    "orthanc": (ORTHANC, ORTHANC_BOUNDARY, [DICOM, b"second!"]),
    "special-boundary": (SPECIAL, SPECIAL_BOUNDARY, [DICOM, b"<x/>"]),
    "preamble-epilogue": (PREAMBLE_EPILOGUE, "B", [b"one", b"two"]),
    "transport-padding": (PADDED, "B", [b"first", b"second", b"third"]),
    "header-forms": (HEADER_FORMS, "B", [b"abc"]),
    "empty-parts": (EMPTY_PARTS, "B", [b"", b"", b""]),
}


@pytest.mark.parametrize("step", [None, 1, 2, 3, 5, 64, 4096])
@pytest.mark.parametrize("name", list(REAL_BODIES))
def test_real_bodies_parse_at_any_chunking(name: str, step: int | None) -> None:
    body, boundary, expected = REAL_BODIES[name]
    assert payloads(parse_sync(body, boundary, step)) == expected


@pytest.mark.parametrize("name", list(REAL_BODIES))
def test_real_bodies_split_in_two_at_every_offset(name: str) -> None:
    body, boundary, expected = REAL_BODIES[name]
    for cut in range(1, len(body)):
        assert payloads(parse_sync(body, boundary, [cut])) == expected, cut


@pytest.mark.anyio
@pytest.mark.parametrize("step", [None, 1, 7])
@pytest.mark.parametrize("name", list(REAL_BODIES))
async def test_real_bodies_async(name: str, step: int | None) -> None:
    body, boundary, expected = REAL_BODIES[name]
    assert payloads(await parse_async(body, boundary, step)) == expected


@pytest.mark.anyio
async def test_orthanc_content_type_and_part_fields() -> None:
    boundary = boundary_from_content_type(ORTHANC_CT)
    assert boundary == ORTHANC_BOUNDARY and len(boundary) == 73
    parts = [p async for p in read_multipart(aiter_chunks(ORTHANC, 100), boundary)]
    # Parts are yielded lazily; fields are available without reading the payload.
    assert [p.content_length for p in parts] == [len(DICOM), 7]
    assert parts[0].content_type == "application/dicom"


@pytest.mark.anyio
async def test_part_fields_from_headers_of_any_case() -> None:
    [part] = [p async for p in read_multipart(aiter_chunks(HEADER_FORMS), "B")]
    assert part.content_type == "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
    assert part.content_length == 3
    assert part.content_location == "http://x/studies/1"
    assert part.headers["x-folded"] == "a  b"  # RFC 5322 §2.2.3 unfolding keeps the whitespace
    assert part.headers["x-twice"] == "1, 2"
    assert parse_media_type(part.content_type) == ("application/dicom", {"transfer-syntax": "1.2.840.10008.1.2.1"})


def test_content_length_payload_is_not_scanned() -> None:
    # With Content-Length the payload may even hold the delimiter: only its declared end is checked.
    payload = b"x\r\n--B\r\nnot a part\r\n--B--\r\n"
    body = make_body("B", [([("Content-Length", str(len(payload)))], payload), ([], b"y")])
    for step in (None, 1, 3):
        assert payloads(parse_sync(body, "B", step)) == [payload, b"y"]


def test_data_events_are_slices_of_the_fed_chunk() -> None:
    payload = os.urandom(10000).replace(b"\r", b"")
    chunk = make_body("B", [([], payload)])
    parser = MultipartParser("B")
    events = parser.feed(chunk)
    parser.close()
    data = [ev for ev in events if isinstance(ev, memoryview)]
    assert len(data) == 1 and data[0].obj is chunk and data[0] == payload


def test_feed_accepts_bytearray_and_memoryview() -> None:
    parser = MultipartParser("MESSAGEBOUNDARY")
    events = parser.feed(bytearray(TUTORIAL[:50])) + parser.feed(memoryview(TUTORIAL)[50:])
    parser.close()
    assert b"".join(bytes(ev) for ev in events if isinstance(ev, memoryview | bytes)) == DICOM
    starts = [ev for ev in events if isinstance(ev, PartStart)]
    assert [(s.index, s.content_type, s.content_length) for s in starts] == [(1, "application/dicom", len(DICOM))]


def test_keeps_back_at_most_a_delimiter_prefix() -> None:
    parser = MultipartParser("MESSAGEBOUNDARY")
    parser.feed(b"--MESSAGEBOUNDARY\r\n\r\n")
    tail = b"\r\n--MESSAGEBOUNDAR"  # len(delimiter) - 1 bytes that could start a delimiter
    events = parser.feed(b"x" * 100 + tail)
    assert [bytes(ev) for ev in events if isinstance(ev, memoryview)] == [b"x" * 100]
    events = parser.feed(b"Z more")  # not a delimiter after all: the kept-back bytes are payload
    assert b"".join(bytes(ev) for ev in events if isinstance(ev, memoryview | bytes)) == tail + b"Z more"
    assert parser.feed(b"\r\n--MESSAGEBOUNDARY--") == [PART_END]
    assert parser.done
    parser.close()


def test_epilogue_after_close_is_ignored() -> None:
    parser = MultipartParser("B")
    events = parser.feed(b"--B\r\n\r\nx\r\n--B--")
    assert events[-1] is PART_END and parser.done
    assert parser.feed(b"\r\n--B\r\ngarbage without colon\r\n\r\n") == []
    parser.close()


# ---------------------------------------------------------------------------------------------- consuming


@pytest.mark.anyio
async def test_next_part_skips_the_rest_of_the_current_one() -> None:
    body = make_body("B", [([], b"a" * 5000), ([], b"b" * 10), ([], b"c" * 5000)])
    seen: list[bytes] = []
    async for part in read_multipart(aiter_chunks(body, 100), "B"):
        if len(seen) == 1:
            seen.append(b"".join([bytes(c) async for c in part.chunks()]))
        elif len(seen) == 0:
            async for chunk in part.chunks():
                seen.append(bytes(chunk))
                break  # read one chunk only
        else:
            seen.append(b"unread")
    assert seen[0] and seen[0] == b"a" * len(seen[0])
    assert seen[1:] == [b"b" * 10, b"unread"]


@pytest.mark.anyio
async def test_chunks_can_be_consumed_once() -> None:
    async for part in read_multipart(aiter_chunks(TUTORIAL), "MESSAGEBOUNDARY"):
        assert b"".join([bytes(c) async for c in part.chunks()]) == DICOM
        with pytest.raises(RuntimeError, match="once"):
            [c async for c in part.chunks()]


@pytest.mark.anyio
async def test_truncated_body_raises_from_chunks() -> None:
    parts = read_multipart(aiter_chunks(TUTORIAL[:-25], 64), "MESSAGEBOUNDARY")
    part = await parts.__anext__()
    with pytest.raises(MalformedMultipart, match="ended in part 1"):
        [c async for c in part.chunks()]


# ---------------------------------------------------------------------------------------------- fuzzing

FUZZ_BOUNDARY = "MESSAGE BOUNDARY'()+_,-./:=?"
FUZZ_DELIM = b"\r\n--" + FUZZ_BOUNDARY.encode()
# Fragments that make near-delimiters: every prefix of the delimiter, plus CR/LF/dash noise and random bytes.
_fragments = st.one_of(
    st.sampled_from([FUZZ_DELIM[:k] for k in range(1, len(FUZZ_DELIM))] + [b"\r", b"\n", b"-", b"--", b"\r\n--\r\n"]),
    st.binary(max_size=12),
)
payload_strategy = st.lists(_fragments, max_size=12).map(b"".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(st.tuples(payload_strategy, st.booleans()), min_size=1, max_size=4),
    preamble=st.sampled_from([b"", b"preamble\r\n", b"\r\n"]),
    padding=st.sampled_from([b"", b" ", b"\t \t"]),
    trailer=st.sampled_from([b"", b"\r\n", b"\r\nepilogue\r\n--" + FUZZ_BOUNDARY.encode()]),
    data=st.data(),
)
def test_fuzz_reassembled_parts_equal_input(
    parts: list[tuple[bytes, bool]], preamble: bytes, padding: bytes, trailer: bytes, data: st.DataObject
) -> None:
    b = FUZZ_BOUNDARY.encode()
    pieces = [preamble]
    for i, (payload, with_length) in enumerate(parts):
        assume(with_length or FUZZ_DELIM not in payload)
        pieces.append((b"--" if i == 0 and not preamble else b"\r\n--") + b + padding + b"\r\n")
        if with_length:
            pieces.append(b"Content-Length: %d\r\n" % len(payload))
        pieces += [b"Content-Type: application/dicom\r\n\r\n", payload]
    pieces.append(b"\r\n--" + b + b"--" + trailer)
    body = b"".join(pieces)
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=20), label="cuts")
    assert payloads(parse_sync(body, FUZZ_BOUNDARY, cuts)) == [p for p, _ in parts]


@settings(max_examples=50, deadline=None)
@given(payload=payload_strategy, step=st.integers(1, 5))
def test_fuzz_small_chunks(payload: bytes, step: int) -> None:
    assume(FUZZ_DELIM not in payload)
    body = make_body(FUZZ_BOUNDARY, [([], payload), ([], payload[::-1])])
    assume(FUZZ_DELIM not in payload[::-1])
    assert payloads(parse_sync(body, FUZZ_BOUNDARY, step)) == [payload, payload[::-1]]


# ---------------------------------------------------------------------------------------------- limits

LIMIT_CASES = {
    "header block": (make_body("B", [([("X-Big", "y" * 200)], b"p")]), {"max_header_bytes": 100}, "header block"),
    "header block unterminated": (b"--B\r\nX-Big: " + b"y" * 500, {"max_header_bytes": 100}, "header block"),
    "parts": (make_body("B", [([], b"p")] * 4), {"max_parts": 3}, "number of parts"),
    "part, scanned": (make_body("B", [([], b"p" * 1000)]), {"max_part_bytes": 999}, "part 1"),
    "part, Content-Length": (
        make_body("B", [([], b"ok"), ([("Content-Length", "1000")], b"p" * 1000)]),
        {"max_part_bytes": 999},
        "part 2 (Content-Length 1000)",
    ),
    "body": (make_body("B", [([], b"p" * 1000)]), {"max_body_bytes": 1000}, "the body"),
}


@pytest.mark.parametrize("step", [None, 1, 7])
@pytest.mark.parametrize("name", list(LIMIT_CASES))
def test_limits(name: str, step: int | None) -> None:
    body, limits, what = LIMIT_CASES[name]
    with pytest.raises(PayloadTooLarge) as info:
        parse_sync(body, "B", step, **limits)
    assert info.value.http_status == 413
    assert what in str(info.value) and str(next(iter(limits.values()))) in str(info.value)


def test_limits_at_the_edge_pass() -> None:
    body = make_body("B", [([], b"p" * 1000)] * 3)
    assert len(parse_sync(body, "B", 10, max_parts=3, max_part_bytes=1000, max_body_bytes=len(body))) == 3


@pytest.mark.anyio
async def test_limits_async() -> None:
    with pytest.raises(PayloadTooLarge, match="number of parts exceeds the limit 1"):
        await parse_async(make_body("B", [([], b"p")] * 2), "B", max_parts=1)


# ---------------------------------------------------------------------------------------------- malformed

MALFORMED_CASES = {
    "empty body": (b"", "no parts"),
    "only close delimiter": (b"--B--\r\n", "no parts"),
    "garbage": (b"x" * 70000, "no boundary delimiter for boundary 'B' in the first 65536 bytes"),
    "ends before any delimiter": (b"hello", "no parts"),
    "ends in headers": (b"--B\r\nContent-Type: a/b\r\n", "ended in part 1"),
    "ends in payload": (b"--B\r\n\r\nabc", "ended in part 1"),
    "ends in payload with length": (b"--B\r\nContent-Length: 10\r\n\r\nabc", "ended in part 1"),
    "ends without close delimiter": (b"--B\r\n\r\nabc\r\n--B\r\n\r\ndef\r\n--B", "ended in part 2"),
    "header without colon": (b"--B\r\nContent-Type a/b\r\n\r\nx\r\n--B--", "part 1 has a header line without"),
    "header without name": (b"--B\r\n: a/b\r\n\r\nx\r\n--B--", "part 1 has a header line without"),
    "bad Content-Length": (b"--B\r\nContent-Length: 1e3\r\n\r\nx\r\n--B--", "part 1 has a bad Content-Length '1e3'"),
    "negative Content-Length": (b"--B\r\nContent-Length: -1\r\n\r\nx\r\n--B--", "bad Content-Length '-1'"),
    "Content-Length too short": (
        b"--B\r\n\r\nok\r\n--B\r\nContent-Length: 2\r\n\r\nabc\r\n--B--",
        "part 2 declares Content-Length 2, but no boundary delimiter follows",
    ),
    "Content-Length too long": (
        b"--B\r\nContent-Length: 4\r\n\r\nabc\r\n--B--\r\n",
        "part 1 declares Content-Length 4",
    ),
    "bytes after delimiter": (b"--B\r\n\r\nx\r\n--BX\r\n\r\ny\r\n--B--", "unexpected bytes b'X"),
    "first delimiter followed by junk": (b"--Bjunk\r\n\r\nx\r\n--B--", "unexpected bytes b'j"),
}


@pytest.mark.parametrize("step", [None, 1, 4])
@pytest.mark.parametrize("name", list(MALFORMED_CASES))
def test_malformed(name: str, step: int | None) -> None:
    body, message = MALFORMED_CASES[name]
    with pytest.raises(MalformedMultipart) as info:
        parse_sync(body, "B", step)
    assert info.value.http_status == 400
    assert message in str(info.value)
    if "unexpected bytes" in message:
        assert f"after the boundary delimiter in front of part {1 if 'junk' in name else 2}" in str(info.value)


@pytest.mark.anyio
async def test_malformed_async() -> None:
    with pytest.raises(MalformedMultipart, match="no parts"):
        await parse_async(b"", "B")


def test_parser_is_unusable_after_an_error() -> None:
    parser = MultipartParser("B")
    with pytest.raises(MalformedMultipart):
        parser.feed(b"--B\r\nno colon\r\n\r\n")
    with pytest.raises(MalformedMultipart, match="already failed"):
        parser.feed(b"more")
    with pytest.raises(MalformedMultipart, match="already failed"):
        parser.close()


@pytest.mark.parametrize("boundary", ["", "a" * 257, "ends in space ", "semi;colon", 'quo"te', "tab\there", "é"])
def test_invalid_boundary(boundary: str) -> None:
    with pytest.raises(MalformedMultipart, match="invalid multipart boundary"):
        MultipartParser(boundary)


# ---------------------------------------------------------------------------------------------- media types

CONTENT_TYPES = {
    'multipart/related; type="application/dicom"; boundary=abc': "abc",
    "Multipart/Related; BOUNDARY=abc; type=application/dicom": "abc",
    'multipart/related;boundary="a b=c\'()+_,-./:=?";x="y;z"': "a b=c'()+_,-./:=?",
    'multipart/related; boundary="esc\\"aped"': None,  # a quote is not a bchar
    "multipart/related; boundary=a/b:c=d?e": "a/b:c=d?e",
    ORTHANC_CT: ORTHANC_BOUNDARY,
}


@pytest.mark.parametrize("value", list(CONTENT_TYPES))
def test_boundary_from_content_type(value: str) -> None:
    expected = CONTENT_TYPES[value]
    if expected is None:
        with pytest.raises(MalformedMultipart, match="invalid multipart boundary"):
            boundary_from_content_type(value)
    else:
        assert boundary_from_content_type(value) == expected


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("multipart/related; type=application/dicom", MalformedMultipart, "no boundary parameter"),
        ('multipart/related; boundary="abc ', MalformedMultipart, "invalid Content-Type"),
        ('multipart/related; boundary="ends in space "', MalformedMultipart, "invalid multipart boundary"),
        ("multipart/related; boundary=", MalformedMultipart, "invalid multipart boundary"),
        ("multipart/form-data; boundary=abc", UnsupportedMediaType, "multipart/form-data"),
        ("application/dicom", UnsupportedMediaType, "expected a multipart/related body"),
        ("", MalformedMultipart, "invalid Content-Type"),
    ],
)
def test_boundary_from_content_type_errors(value: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        boundary_from_content_type(value)


def test_parse_media_type() -> None:
    value = ' Multipart/Related ; Type="application/dicom+xml";start="<a;b>" ; ;x=1;q="a\\"b\\\\c";boundary=zz;x=2'
    assert parse_media_type(value) == (
        "multipart/related",
        {"type": "application/dicom+xml", "start": "<a;b>", "x": "1", "q": 'a"b\\c', "boundary": "zz"},
    )
    assert parse_media_type("application/dicom") == ("application/dicom", {})
    for bad in ("application", "a/b; =x", 'a/b; x="open', "a/b c"):
        with pytest.raises(InvalidRequest):
            parse_media_type(bad)


# ---------------------------------------------------------------------------------------------- writer


async def _payload(*chunks: bytes | memoryview) -> AsyncIterator[bytes | memoryview]:
    for c in chunks:
        yield c


WriterParts = AsyncIterator[tuple[dict[str, str], AsyncIterator[bytes | memoryview]]]


def _writer_parts(items: Sequence[tuple[dict[str, str], Sequence[bytes | memoryview]]]) -> WriterParts:
    async def gen() -> WriterParts:
        for headers, chunks in items:
            yield headers, _payload(*chunks)

    return gen()


WRITER_ITEMS = [
    ({"Content-Type": "application/dicom"}, [DICOM[:100], DICOM[100:]]),
    ({"Content-Type": "application/dicom", "Content-Length": "3"}, [b"abc"]),
    ({}, [b"", b"\r\n--not-it\r\n"]),
]


@pytest.mark.anyio
async def test_writer_round_trips_through_reader() -> None:
    boundary = new_boundary()
    body = b"".join([bytes(c) async for c in write_multipart(_writer_parts(WRITER_ITEMS), boundary)])
    assert body.startswith(b"--" + boundary.encode() + b"\r\n")
    assert body.endswith(b"\r\n--" + boundary.encode() + b"--\r\n")
    for step in (None, 1, 5):
        parsed = await parse_async(body, boundary, step)
        assert payloads(parsed) == [b"".join(c) for _, c in WRITER_ITEMS]
        assert [h for h, _ in parsed] == [{k.lower(): v for k, v in h.items()} for h, _ in WRITER_ITEMS]


@pytest.mark.anyio
async def test_writer_passes_payload_chunks_through() -> None:
    chunk = memoryview(b"payload bytes")
    out = [c async for c in write_multipart(_writer_parts([({}, [chunk])]), "b")]
    assert any(c is chunk for c in out)
    assert b"".join(bytes(c) for c in out) == b"--b\r\n\r\npayload bytes\r\n--b--\r\n"


@pytest.mark.anyio
async def test_writer_output_parses_with_other_libraries() -> None:
    multipart = pytest.importorskip("multipart")
    python_multipart = pytest.importorskip("python_multipart")
    boundary = new_boundary()
    body = b"".join([bytes(c) async for c in write_multipart(_writer_parts(WRITER_ITEMS), boundary)])
    expected = [b"".join(c) for _, c in WRITER_ITEMS]

    class RelatedParser(multipart.PushMultipartParser):  # type: ignore[misc,name-defined]
        def _create_segment(self, headerlist):  # type: ignore[no-untyped-def]
            return multipart.MultipartSegment(headerlist)  # no form-data Content-Disposition needed

    got: list[bytes] = []
    with RelatedParser(boundary) as parser:
        for ev in parser.parse(body):
            if ev is None:
                pass
            elif isinstance(ev, bytes | bytearray):
                got[-1] += ev
            else:
                got.append(b"")
    assert got == expected

    got = []
    callbacks = {
        "on_part_begin": lambda: got.append(b""),
        "on_part_data": lambda data, start, end: got.__setitem__(-1, got[-1] + data[start:end]),
    }
    pm = python_multipart.MultipartParser(boundary, callbacks)
    pm.write(body)
    pm.finalize()
    assert got == expected


@pytest.mark.anyio
@pytest.mark.parametrize("count", [0, 1, 2, 3])
async def test_multipart_length_is_the_written_length(count: int) -> None:
    items = WRITER_ITEMS[:count]
    boundary = new_boundary()
    body = b"".join([bytes(c) async for c in write_multipart(_writer_parts(items), boundary)])
    assert multipart_length([(h, sum(map(len, c))) for h, c in items], boundary) == len(body)


@pytest.mark.anyio
async def test_writer_rejects_header_injection() -> None:
    with pytest.raises(ValueError, match="invalid part header"):
        [c async for c in write_multipart(_writer_parts([({"X": "a\r\nEvil: 1"}, [b"x"])]), "b")]


def test_multipart_content_type() -> None:
    assert (
        multipart_content_type("application/dicom", "abc")
        == 'multipart/related; type="application/dicom"; boundary=abc'
    )
    value = multipart_content_type("application/dicom", "a b", transfer_syntax="1.2.840.10008.1.2.1", start="<x>")
    assert value == (
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1; start="<x>"; boundary="a b"'
    )
    media_type, params = parse_media_type(value)
    assert boundary_from_content_type(value) == "a b" and params["start"] == "<x>"


def test_new_boundary() -> None:
    boundaries = {new_boundary() for _ in range(100)}
    assert len(boundaries) == 100
    for b in boundaries:
        MultipartParser(b)  # valid per RFC 2046


@pytest.mark.anyio
@pytest.mark.parametrize("count", [0, 1, 3])
async def test_join_multipart_is_write_multipart_in_one_piece(count: int) -> None:
    from dicomweb_kit.codecs.multipart import join_multipart, write_multipart

    parts = [({"Content-Type": "application/dicom+xml"}, f"<doc{n}/>".encode()) for n in range(count)]

    async def streamed() -> AsyncIterator[tuple[dict[str, str], AsyncIterator[bytes]]]:
        for headers, payload in parts:

            async def one(payload: bytes = payload) -> AsyncIterator[bytes]:
                yield payload

            yield headers, one()

    expected = b"".join([bytes(chunk) async for chunk in write_multipart(streamed(), "jb")])
    assert join_multipart(parts, "jb") == expected
