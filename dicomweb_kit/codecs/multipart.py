"""Streaming multipart/related codec (RFC 2046 §5.1, RFC 2387) for STOW-RS bodies and WADO-RS responses.

Reading is a synchronous push parser, :class:`MultipartParser`, that turns fed chunks into events;
:func:`read_multipart` is a thin async wrapper over it that yields :class:`Part` objects whose payload
is streamed by :meth:`Part.chunks`. Memory stays flat: payload events are ``memoryview`` slices of the
fed chunks, and only the few bytes at a chunk end that could start a delimiter are kept back.

The delimiter is searched with ``bytes.find`` (C speed); a part that declares ``Content-Length`` is
not scanned at all, only checked to be followed by the delimiter exactly at its declared end.

Writing is :func:`write_multipart`, which yields small framing ``bytes`` and passes the payload
chunks through unchanged.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Final, TypeAlias

import msgspec

from dicomweb_kit.errors import InvalidRequest, MalformedMultipart, PayloadTooLarge, UnsupportedMediaType

__all__ = [
    "MAX_BOUNDARY_LENGTH",
    "MAX_PREAMBLE_BYTES",
    "PART_END",
    "MultipartEvent",
    "MultipartLimits",
    "MultipartParser",
    "Part",
    "PartEnd",
    "PartStart",
    "boundary_from_content_type",
    "multipart_content_type",
    "multipart_length",
    "new_boundary",
    "parse_media_type",
    "read_multipart",
    "write_multipart",
]

#: RFC 2046 §5.1.1 caps a boundary at 70 characters, but Orthanc sends 73 (two UUIDs joined by "-"),
#: so we accept longer ones; this bound only keeps a hostile header from building a huge delimiter.
MAX_BOUNDARY_LENGTH: Final = 256
#: How far we look for the first delimiter before calling the body garbage (the preamble is ignored).
MAX_PREAMBLE_BYTES: Final = 64 * 1024
#: Longest run of transport padding (RFC 2046 §5.1.1: LWSP after a delimiter) we tolerate.
_MAX_PADDING: Final = 1024

# RFC 2046 §5.1.1: bchars := bcharsnospace / " "; a boundary is 0*69<bchars> bcharsnospace.
_BOUNDARY_RE: Final = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]*[0-9A-Za-z'()+_,\-./:=?]")
# RFC 9110 §5.6.2 token; used for media types, parameter names and values that need no quoting.
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_MEDIA_TYPE_RE: Final = re.compile(r"\s*([!#$%&'*+\-.^_`|~0-9A-Za-z]+/[!#$%&'*+\-.^_`|~0-9A-Za-z]+)\s*")
# One ";name=value" parameter (RFC 9110 §5.6.6); the value is a quoted-string (RFC 9110 §5.6.4, with
# quoted-pairs) or, leniently, any run of bytes up to ";" or whitespace. Empty ";" elements are allowed.
_PARAM_RE: Final = re.compile(
    r';\s*(?:([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;"\s]*)))?\s*', re.DOTALL
)
_QUOTED_PAIR_RE: Final = re.compile(r"\\(.)", re.DOTALL)
# RFC 5322 §2.2.3: unfolding removes the CRLF in front of leading whitespace.
_FOLD_RE: Final = re.compile(r"\r\n(?=[ \t])")


class MultipartLimits(msgspec.Struct, frozen=True):
    """Size and count limits for one multipart body; breaking one raises :class:`PayloadTooLarge`.

    Args:
        max_header_bytes: longest header block of one part.
        max_parts: most body parts in one body.
        max_part_bytes: longest payload of one part (``None``: unlimited).
        max_body_bytes: longest body, counting preamble, framing and epilogue (``None``: unlimited).
    """

    max_header_bytes: int = 16384
    max_parts: int = 10000
    max_part_bytes: int | None = None
    max_body_bytes: int | None = None


_DEFAULT_LIMITS: Final = MultipartLimits()


class PartStart:
    """Parser event: a body part begins; carries its parsed headers."""

    __slots__ = ("content_length", "content_location", "content_type", "headers", "index")

    def __init__(
        self,
        index: int,
        headers: dict[str, str],
        content_type: str | None,
        content_length: int | None,
        content_location: str | None,
    ) -> None:
        #: 1-based position of the part in the body.
        self.index = index
        #: Header fields with lower-cased names; folded lines unfolded, repeated fields joined by ", ".
        self.headers = headers
        self.content_type = content_type
        self.content_length = content_length
        self.content_location = content_location

    def __repr__(self) -> str:
        return f"PartStart(index={self.index}, headers={self.headers!r})"


class PartEnd:
    """Parser event: the current body part ended (its closing delimiter was seen)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PART_END"


#: The one :class:`PartEnd` instance; compare with ``is``.
PART_END: Final = PartEnd()

#: What :meth:`MultipartParser.feed` returns a list of: a part start, payload data, or a part end.
MultipartEvent: TypeAlias = PartStart | memoryview | bytes | PartEnd

# Parser states.
_PREAMBLE: Final = 0  # before the first delimiter
_AFTER_DELIM: Final = 1  # just past "CRLF--boundary": expect "--", or transport padding and CRLF
_HEADERS: Final = 2  # in a part's header block
_SCAN: Final = 3  # in a payload without Content-Length: search the delimiter
_COUNTED: Final = 4  # in a payload with Content-Length: count bytes
_VERIFY: Final = 5  # right after a counted payload: the delimiter must follow
_DONE: Final = 6  # past the close delimiter: the rest is epilogue
_FAILED: Final = 7  # an error was raised; the parser is unusable


def _validate_boundary(boundary: str) -> bytes:
    if not 0 < len(boundary) <= MAX_BOUNDARY_LENGTH or not _BOUNDARY_RE.fullmatch(boundary):
        raise MalformedMultipart(
            f"invalid multipart boundary {boundary[:80]!r}: RFC 2046 §5.1.1 allows 1-70 characters of"
            " digits, letters and '()+_,-./:=? or space, not ending in a space"
        )
    return boundary.encode("ascii")


class MultipartParser:
    """Synchronous push parser for a multipart/related body (RFC 2046 §5.1, RFC 2387).

    Call :meth:`feed` with each chunk of the body and :meth:`close` at the end. ``feed`` returns the
    events the chunk completed: a :class:`PartStart`, then payload slices (``memoryview`` slices of the
    fed chunk, or small ``bytes`` for bytes kept back at a chunk end), then :data:`PART_END`, per part.
    Slices stay valid as long as the caller keeps them; the parser never mutates fed chunks.

    Raises:
        MalformedMultipart: the body is not well-formed (400); the parser is unusable afterwards.
        PayloadTooLarge: a :class:`MultipartLimits` limit was broken (413).
    """

    __slots__ = (
        "_body_bytes",
        "_cl",
        "_delim",
        "_dlen",
        "_limits",
        "_part_bytes",
        "_parts",
        "_pending",
        "_preamble_bytes",
        "_remaining",
        "_started",
        "_state",
    )

    def __init__(self, boundary: str, *, limits: MultipartLimits = _DEFAULT_LIMITS) -> None:
        # RFC 2046 §5.1.1: the delimiter is CRLF "--" boundary; the CRLF belongs to it, not to the payload.
        self._delim = b"\r\n--" + _validate_boundary(boundary)
        self._dlen = len(self._delim)
        self._limits = limits
        self._state = _PREAMBLE
        self._pending = b""  # bytes kept back from the previous chunk
        self._started = False  # has the body start been checked for a CRLF-less first delimiter?
        self._parts = 0
        self._part_bytes = 0
        self._body_bytes = 0
        self._preamble_bytes = 0
        self._remaining = 0  # payload bytes still due in the _COUNTED state
        self._cl = 0  # Content-Length of the current part, for messages

    @property
    def done(self) -> bool:
        """Whether the close delimiter has been seen."""
        return self._state == _DONE

    @property
    def parts(self) -> int:
        """How many parts have started so far."""
        return self._parts

    def _fail(self, exc: Exception) -> Exception:
        self._state = _FAILED
        self._pending = b""
        return exc

    def _malformed(self, message: str) -> Exception:
        return self._fail(MalformedMultipart(f"malformed multipart body: {message}"))

    def _too_large(self, what: str, limit: int) -> Exception:
        return self._fail(PayloadTooLarge(f"multipart body too large: {what} exceeds the limit {limit}"))

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[MultipartEvent]:
        """Parse the next chunk of the body and return the events it completes."""
        state = self._state
        if state >= _DONE:
            if state == _FAILED:
                raise MalformedMultipart("malformed multipart body: the parser already failed")
            self._body_bytes += len(chunk)  # epilogue (RFC 2046 §5.1.1): ignored, but counted
            self._check_body_size()
            return []
        if not chunk:
            return []
        if type(chunk) is not bytes:
            chunk = bytes(chunk)
        self._body_bytes += len(chunk)
        limits = self._limits
        if limits.max_body_bytes is not None:
            self._check_body_size()
        max_part = limits.max_part_bytes
        delim = self._delim
        dlen = self._dlen
        events: list[MultipartEvent] = []
        part_bytes = self._part_bytes

        pending = self._pending
        if pending:
            self._pending = b""
            if state == _SCAN:
                # The kept-back tail is a proper prefix of the delimiter, which holds only one CR (bchars
                # exclude it), so a delimiter can only start at the tail's first byte: no copy of the chunk.
                rest = delim[len(pending) :]
                if chunk.startswith(rest):
                    events.append(PART_END)
                    state = _AFTER_DELIM
                    buf = chunk
                    pos = len(rest)
                elif len(chunk) < len(rest) and rest.startswith(chunk):
                    self._pending = pending + chunk
                    return events
                else:
                    events.append(pending)
                    part_bytes += len(pending)
                    if max_part is not None and part_bytes > max_part:
                        raise self._too_large(f"part {self._parts}", max_part)
                    buf = chunk
                    pos = 0
            else:
                # Headers or framing straddle the chunk end: rare outside tiny chunks, so a copy is fine.
                buf = pending + chunk
                pos = 0
        else:
            buf = chunk
            pos = 0
        mv = memoryview(buf)
        n = len(buf)

        while pos < n:
            if state == _SCAN:
                i = buf.find(delim, pos)
                if i == -1:
                    # Keep back a tail that may start a delimiter: it starts at the last CR, if any.
                    end = n
                    r = buf.rfind(b"\r", max(pos, n - dlen + 1))
                    if r != -1 and delim.startswith(buf[r:]):
                        end = r
                        self._pending = buf[r:]
                    if end > pos:
                        events.append(mv[pos:end])
                        part_bytes += end - pos
                        if max_part is not None and part_bytes > max_part:
                            raise self._too_large(f"part {self._parts}", max_part)
                    break
                if i > pos:
                    events.append(mv[pos:i])
                    part_bytes += i - pos
                    if max_part is not None and part_bytes > max_part:
                        raise self._too_large(f"part {self._parts}", max_part)
                events.append(PART_END)
                pos = i + dlen
                state = _AFTER_DELIM

            elif state == _COUNTED:
                remaining = self._remaining
                if n - pos < remaining:
                    events.append(mv[pos:])
                    self._remaining = remaining - (n - pos)
                    break
                if remaining:
                    events.append(mv[pos : pos + remaining])
                    pos += remaining
                    self._remaining = 0
                state = _VERIFY

            elif state == _AFTER_DELIM:
                if n - pos < 2:
                    self._pending = buf[pos:]
                    break
                two = buf[pos : pos + 2]
                if two == b"\r\n":
                    pos += 2
                elif two == b"--":
                    # RFC 2046 §5.1.1 close-delimiter; what follows (padding, CRLF, epilogue) is ignored.
                    if not self._parts:
                        raise self._malformed("no parts (the body holds only a close delimiter)")
                    state = _DONE
                    break
                else:
                    # RFC 2046 §5.1.1: transport-padding (LWSP) may sit between the delimiter and its CRLF.
                    e = buf.find(b"\r\n", pos)
                    if e == -1:
                        tail = buf[pos:-1] if buf.endswith(b"\r") else buf[pos:]
                        if tail.strip(b" \t") or n - pos > _MAX_PADDING:
                            raise self._malformed(
                                f"unexpected bytes {buf[pos : pos + 20]!r} after the boundary delimiter"
                                f" in front of part {self._parts + 1}"
                            )
                        self._pending = buf[pos:]
                        break
                    if e - pos > _MAX_PADDING or buf[pos:e].strip(b" \t"):
                        raise self._malformed(
                            f"unexpected bytes {buf[pos : min(e, pos + 20)]!r} after the boundary delimiter"
                            f" in front of part {self._parts + 1}"
                        )
                    pos = e + 2
                self._parts += 1
                if self._parts > limits.max_parts:
                    raise self._too_large("the number of parts", limits.max_parts)
                state = _HEADERS

            elif state == _HEADERS:
                if buf.startswith(b"\r\n", pos):  # a part without header fields (RFC 2046 §5.1.1)
                    pos += 2
                    headers: dict[str, str] = {}
                else:
                    e = buf.find(b"\r\n\r\n", pos)
                    if e == -1:
                        if n - pos > limits.max_header_bytes + 3:
                            raise self._too_large(f"the header block of part {self._parts}", limits.max_header_bytes)
                        self._pending = buf[pos:]
                        break
                    if e - pos > limits.max_header_bytes:
                        raise self._too_large(f"the header block of part {self._parts}", limits.max_header_bytes)
                    headers = self._parse_headers(buf[pos:e])
                    pos = e + 4
                cl_text = headers.get("content-length")
                if cl_text is None:
                    cl = None
                    state = _SCAN
                    part_bytes = 0
                else:
                    if not (cl_text.isdigit() and cl_text.isascii()):
                        raise self._malformed(f"part {self._parts} has a bad Content-Length {cl_text[:40]!r}")
                    cl = int(cl_text)
                    if max_part is not None and cl > max_part:
                        raise self._too_large(f"part {self._parts} (Content-Length {cl})", max_part)
                    self._remaining = self._cl = cl
                    state = _COUNTED
                events.append(
                    PartStart(self._parts, headers, headers.get("content-type"), cl, headers.get("content-location"))
                )

            elif state == _VERIFY:
                if buf.startswith(delim, pos):
                    events.append(PART_END)
                    pos += dlen
                    state = _AFTER_DELIM
                elif n - pos < dlen and delim.startswith(buf[pos:]):
                    self._pending = buf[pos:]
                    break
                else:
                    raise self._malformed(
                        f"part {self._parts} declares Content-Length {self._cl}, but no boundary delimiter"
                        f" follows its {self._cl} payload bytes"
                    )

            elif state == _PREAMBLE:
                if not self._started:
                    # RFC 2046 §5.1.1: the body may start with the dash-boundary itself, without a CRLF.
                    dash = delim[2:]
                    if buf.startswith(dash):
                        self._started = True
                        pos = len(dash)
                        state = _AFTER_DELIM
                        continue
                    if n < len(dash) and dash.startswith(buf):
                        self._pending = buf
                        break
                    self._started = True
                i = buf.find(delim, pos)
                if i != -1:
                    pos = i + dlen
                    state = _AFTER_DELIM
                    continue
                r = buf.rfind(b"\r", max(pos, n - dlen + 1))
                keep = r if r != -1 and delim.startswith(buf[r:]) else n
                self._preamble_bytes += keep - pos
                if self._preamble_bytes > MAX_PREAMBLE_BYTES:
                    raise self._malformed(
                        f"no boundary delimiter for boundary {delim[4:].decode()!r} in the first"
                        f" {MAX_PREAMBLE_BYTES} bytes"
                    )
                self._pending = buf[keep:]
                break

            else:  # _DONE: the epilogue is ignored
                break

        self._state = state
        self._part_bytes = part_bytes
        return events

    def _check_body_size(self) -> None:
        max_body = self._limits.max_body_bytes
        if max_body is not None and self._body_bytes > max_body:
            raise self._too_large("the body", max_body)

    def _parse_headers(self, block: bytes) -> dict[str, str]:
        # Header fields are ASCII (RFC 2045 §3); latin-1 maps any stray byte one-to-one and never fails.
        text = block.decode("latin-1")
        if "\r\n " in text or "\r\n\t" in text:
            text = _FOLD_RE.sub("", text)
        headers: dict[str, str] = {}
        for line in text.split("\r\n"):
            name, colon, value = line.partition(":")
            name = name.strip().lower()
            if not colon or not name:
                raise self._malformed(f"part {self._parts} has a header line without a field name: {line[:60]!r}")
            value = value.strip()
            if name in headers:
                headers[name] = f"{headers[name]}, {value}"
            else:
                headers[name] = value
        return headers

    def close(self) -> None:
        """Signal the end of the body.

        Raises:
            MalformedMultipart: the body ended before the close delimiter, or held no part at all.
        """
        state = self._state
        if state == _DONE:
            return
        if state == _FAILED:
            raise MalformedMultipart("malformed multipart body: the parser already failed")
        self._state = _FAILED
        if not self._parts:
            raise MalformedMultipart("malformed multipart body: no parts (no boundary delimiter found)")
        raise MalformedMultipart(
            f"malformed multipart body: the body ended in part {self._parts}, before the close delimiter"
        )


# --------------------------------------------------------------------------------------------- async API


class _EventStream:
    """Pulls chunks from the body into the parser and hands out its events one by one."""

    __slots__ = ("_body", "_eof", "_events", "_i", "parser")

    def __init__(self, body: AsyncIterable[bytes], parser: MultipartParser) -> None:
        self._body = body.__aiter__()
        self.parser = parser
        self._events: list[MultipartEvent] = []
        self._i = 0
        self._eof = False

    async def refill(self) -> bool:
        """Feed chunks until some events are ready; ``False`` at the end of the body."""
        while True:
            if self._eof or self.parser.done:
                return False  # after the close delimiter the rest is epilogue: stop reading
            try:
                chunk = await self._body.__anext__()
            except StopAsyncIteration:
                self._eof = True
                self.parser.close()
                return False
            events = self.parser.feed(chunk)
            if events:
                self._events = events
                self._i = 0
                return True

    async def next(self) -> MultipartEvent | None:
        if self._i >= len(self._events) and not await self.refill():
            return None
        event = self._events[self._i]
        self._i += 1
        return event


class Part:
    """One body part of a multipart/related body, as :func:`read_multipart` yields it."""

    __slots__ = ("_consumed", "_done", "_stream", "content_length", "content_location", "content_type", "headers")

    def __init__(self, start: PartStart, stream: _EventStream) -> None:
        #: Header fields with lower-cased names; folded lines unfolded, repeated fields joined by ", ".
        self.headers: dict[str, str] = start.headers
        #: The raw Content-Type value, parameters included (see :func:`parse_media_type`).
        self.content_type: str | None = start.content_type
        self.content_length: int | None = start.content_length
        self.content_location: str | None = start.content_location
        self._stream = stream
        self._consumed = False
        self._done = False

    def __repr__(self) -> str:
        return f"Part(headers={self.headers!r})"

    async def chunks(self) -> AsyncIterator[memoryview | bytes]:
        """Stream the part's payload; can be consumed once, and only before asking for the next part."""
        if self._consumed:
            raise RuntimeError("Part.chunks() can be consumed only once")
        self._consumed = True
        stream = self._stream
        while not self._done:
            events = stream._events
            i = stream._i
            # Hand out the already parsed events without an await per event.
            while i < len(events):
                event = events[i]
                i += 1
                stream._i = i
                if isinstance(event, memoryview | bytes):
                    yield event
                else:  # the parser always ends a part before it starts the next one
                    self._done = True
                    return
            if not await stream.refill():
                return  # close() raised already if the body was incomplete

    async def _drain(self) -> None:
        self._consumed = True
        stream = self._stream
        while not self._done:
            event = await stream.next()
            if event is None or event is PART_END:
                self._done = True


async def read_multipart(
    body: AsyncIterable[bytes], boundary: str, /, *, limits: MultipartLimits = _DEFAULT_LIMITS
) -> AsyncIterator[Part]:
    """Yield the parts of a multipart/related body as it streams in.

    Asking for the next part before the current one's :meth:`Part.chunks` is exhausted skips the rest
    of the current part.

    Raises:
        MalformedMultipart: the body is not well-formed, or holds no part (400).
        PayloadTooLarge: a limit of ``limits`` was broken (413).
    """
    stream = _EventStream(body, MultipartParser(boundary, limits=limits))
    current: Part | None = None
    while True:
        if current is not None and not current._done:
            await current._drain()
        event = await stream.next()
        if event is None:
            return
        if type(event) is PartStart:
            current = Part(event, stream)
            yield current


# --------------------------------------------------------------------------------------------- media types


def _unquote(value: str) -> str:
    return _QUOTED_PAIR_RE.sub(r"\1", value) if "\\" in value else value


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a media type header value into the lower-cased type and its parameters (RFC 9110 §8.3.1).

    Parameter names are lower-cased; quoted-string values are unquoted (quoted-pairs resolved, so a
    ``;`` inside quotes stays in the value). The first occurrence of a repeated parameter wins.

    Raises:
        InvalidRequest: the value is not a ``type/subtype *( ; name=value )`` media type.
    """
    m = _MEDIA_TYPE_RE.match(value)
    if m is None:
        raise InvalidRequest(f"invalid media type {value[:100]!r}")
    media_type = m.group(1).lower()
    params: dict[str, str] = {}
    pos = m.end()
    end = len(value)
    while pos < end:
        p = _PARAM_RE.match(value, pos)
        if p is None:
            raise InvalidRequest(f"invalid parameters {value[pos : pos + 60]!r} in media type {value[:100]!r}")
        name, quoted, bare = p.groups()
        if name is not None:
            params.setdefault(name.lower(), _unquote(quoted) if quoted is not None else bare)
        pos = p.end()
    return media_type, params


def boundary_from_content_type(content_type: str) -> str:
    """Return the boundary of a ``multipart/related`` Content-Type header value (RFC 2046 §5.1.1, RFC 2387).

    Use :func:`parse_media_type` for the other parameters (``type``, ``start``, ...).

    Raises:
        UnsupportedMediaType: the media type is not multipart/related (415).
        MalformedMultipart: the header does not parse, or the boundary parameter is missing or invalid (400).
    """
    try:
        media_type, params = parse_media_type(content_type)
    except InvalidRequest as exc:
        raise MalformedMultipart(f"invalid Content-Type header: {exc}") from None
    if media_type != "multipart/related":
        raise UnsupportedMediaType(f"expected a multipart/related body, got {media_type!r}")
    boundary = params.get("boundary")
    if boundary is None:
        raise MalformedMultipart(
            f"the multipart/related Content-Type has no boundary parameter: {content_type[:200]!r}"
        )
    _validate_boundary(boundary)
    return boundary


# --------------------------------------------------------------------------------------------- writer


def new_boundary() -> str:
    """A fresh random boundary (32 hex digits): it cannot occur in a payload by chance."""
    return secrets.token_hex(16)


def _param_value(value: str) -> str:
    if _TOKEN_RE.fullmatch(value):
        return value
    if "\r" in value or "\n" in value:
        raise ValueError(f"a media type parameter cannot contain CR or LF: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def multipart_content_type(part_type: str, boundary: str, **params: str) -> str:
    """Build a ``multipart/related`` Content-Type value (RFC 2387 §3.1).

    ``type`` is always quoted, as PS3.18 §8.7.3.3 shows it; other values are quoted only when needed.
    Underscores in keyword names become dashes (``transfer_syntax=`` -> ``transfer-syntax=``).

    >>> multipart_content_type("application/dicom", "b1")
    'multipart/related; type="application/dicom"; boundary=b1'
    """
    _validate_boundary(boundary)
    parts = [f'multipart/related; type="{part_type}"']
    parts.extend(f"{name.replace('_', '-')}={_param_value(value)}" for name, value in params.items())
    parts.append(f"boundary={_param_value(boundary)}")
    return "; ".join(parts)


def _header_block(headers: Mapping[str, str]) -> bytes:
    return _header_block_of(tuple(headers.items()))


@functools.lru_cache(maxsize=64)
def _header_block_of(items: tuple[tuple[str, str], ...]) -> bytes:
    # Cached: a retrieve sends the same one or two header blocks for thousands of parts.
    lines = []
    for name, value in items:
        if not _TOKEN_RE.fullmatch(name) or "\r" in value or "\n" in value:
            raise ValueError(f"invalid part header {name!r}: {value!r}")
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def multipart_length(parts: Iterable[tuple[Mapping[str, str], int]], boundary: str) -> int:
    """The exact length of the body :func:`write_multipart` yields for ``parts`` given as
    (headers, payload size) pairs, for a ``Content-Length`` sent before the body.

    >>> multipart_length([({"Content-Type": "application/dicom"}, 10)], "b1")
    61
    """
    dash = len(_validate_boundary(boundary)) + 2
    total = count = 0
    for headers, size in parts:
        total += len(_header_block(headers)) + size
        count += 1
    # "--b CRLF headers payload" for the first part, "CRLF --b CRLF headers payload" for the others,
    # then the close delimiter "[CRLF] --b -- CRLF".
    framing = count * (dash + 2) + max(count - 1, 0) * 2 + (2 if count else 0) + dash + 4
    return total + framing


def join_multipart(parts: Iterable[tuple[Mapping[str, str], bytes]], boundary: str) -> bytes:
    """The body :func:`write_multipart` would stream for ``parts``, as one ``bytes``: for small
    bodies already in memory (a QIDO-RS XML result), sent in one write."""
    dash = b"--" + _validate_boundary(boundary)
    delimiter = b"\r\n" + dash + b"\r\n"
    pieces = [piece for headers, payload in parts for piece in (delimiter + _header_block(headers), payload)]
    if not pieces:
        return dash + b"--\r\n"
    pieces[0] = pieces[0][2:]  # the first delimiter needs no CRLF in front
    pieces.append(b"\r\n" + dash + b"--\r\n")
    return b"".join(pieces)


async def write_multipart(
    parts: AsyncIterable[tuple[Mapping[str, str], AsyncIterable[bytes | memoryview]]], boundary: str
) -> AsyncIterator[bytes | memoryview]:
    """Frame parts as a multipart/related body (RFC 2046 §5.1.1), streaming.

    Yields each delimiter with its header block as one small ``bytes`` object and the payload chunks
    unchanged (no copies, never joined with the framing), and ends with the close delimiter and a
    CRLF. The caller must pick a boundary that cannot occur in the payloads (:func:`new_boundary`)
    and set Content-Type with :func:`multipart_content_type`; :func:`multipart_length` gives the
    body's length up front when the payload sizes are known. With no parts the body is the bare close
    delimiter; RFC 2046 wants at least one part, so callers should answer an empty result without a
    multipart body.
    """
    dash = b"--" + _validate_boundary(boundary)
    lead = dash  # the first delimiter needs no CRLF in front (the preamble is empty)
    async for headers, payload in parts:
        yield lead + b"\r\n" + _header_block(headers)
        lead = b"\r\n" + dash
        async for chunk in payload:
            if chunk:
                yield chunk
    yield lead + b"--\r\n"
