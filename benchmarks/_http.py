"""A small blocking HTTP/1.1 keep-alive client for the server benchmark, plus multipart helpers.

Why not httpx/requests: on this 2-core box their per-request Python overhead halves the request
rate a single client can reach, so the client, not the server, would be measured. This client does
one ``sendall`` per request (two for large bodies) and reads the answer through a C-level buffered
reader: status line, headers, then the body by ``Content-Length`` or chunked transfer coding (or to
EOF for a close-delimited answer). Every body is read completely before ``request`` returns.

Not a general-purpose client: no TLS, no redirects, no proxies, no ``Expect: 100-continue`` (a stray
1xx answer is skipped), and header values are latin-1.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "HttpConnection",
    "HttpError",
    "HttpResponse",
    "boundary_of",
    "build_multipart",
    "split_multipart",
    "split_url",
]

_LARGE_BODY = 64 * 1024
Headers = Mapping[str, str] | Iterable[tuple[str, str]]


class HttpError(Exception):
    """The connection broke or the server sent something that is not HTTP/1.x."""


@dataclass(slots=True)
class HttpResponse:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names; repeated fields joined with ", "
    body: bytes

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


class _StaleConnection(HttpError):
    """The server closed an idle keep-alive connection before answering: safe to retry once."""


def split_url(url: str) -> tuple[str, int, str]:
    """``http://host:port/prefix`` -> (host, port, "/prefix") with no trailing slash on the prefix."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"need an http://host[:port]/path URL, got {url!r}")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


class HttpConnection:
    """One persistent connection; reconnects transparently when the server closed it."""

    def __init__(self, host: str, port: int, *, timeout: float = 300.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._rfile: io.BufferedReader | None = None
        self._host_header = f"{host}:{port}".encode("latin-1")
        self._used = False  # True once the current socket has carried a full exchange

    def __enter__(self) -> HttpConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._rfile is not None:
            self._rfile.close()
            self._rfile = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._used = False

    def _connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._rfile = sock.makefile("rb", buffering=256 * 1024)
        self._used = False

    def get(self, target: str, headers: Headers = ()) -> HttpResponse:
        return self.request("GET", target, headers)

    def post(self, target: str, body: bytes, headers: Headers = ()) -> HttpResponse:
        return self.request("POST", target, headers, body)

    def request(self, method: str, target: str, headers: Headers = (), body: bytes | None = None) -> HttpResponse:
        """Send one request and read the whole answer. Retries once on a stale keep-alive socket."""
        items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        lines = [f"{method} {target} HTTP/1.1".encode("latin-1"), b"Host: " + self._host_header]
        lines += [f"{name}: {value}".encode("latin-1") for name, value in items]
        if body is not None or method in ("POST", "PUT"):
            lines.append(b"Content-Length: %d" % len(body or b""))
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        for attempt in (0, 1):
            if self._sock is None:
                self._connect()
            try:
                return self._exchange(method, head, body)
            except _StaleConnection:
                self.close()
                if attempt:
                    raise
            except (OSError, HttpError):
                self.close()
                raise
        raise AssertionError("unreachable")

    def _exchange(self, method: str, head: bytes, body: bytes | None) -> HttpResponse:
        assert self._sock is not None and self._rfile is not None
        reused = self._used
        try:
            if body and len(body) > _LARGE_BODY:
                self._sock.sendall(head)
                self._sock.sendall(body)
            else:
                self._sock.sendall(head + (body or b""))
            status_line = self._rfile.readline(65537)
        except (BrokenPipeError, ConnectionResetError) as exc:
            if reused:
                raise _StaleConnection(str(exc)) from exc
            raise
        if not status_line:
            if reused:
                raise _StaleConnection("server closed the idle connection")
            raise HttpError("server closed the connection without answering")
        while True:
            version, status, reason = _parse_status(status_line)
            headers = self._read_headers()
            if not 100 <= status < 200 or status == 101:
                break
            status_line = self._rfile.readline(65537)  # skip 1xx interim answers
        data, close = self._read_body(method, status, version, headers)
        if close:
            self.close()
        else:
            self._used = True
        return HttpResponse(status, reason, headers, data)

    def _read_headers(self) -> dict[str, str]:
        assert self._rfile is not None
        headers: dict[str, str] = {}
        while True:
            line = self._rfile.readline(65537)
            if line in (b"\r\n", b"\n"):
                return headers
            if not line:
                raise HttpError("connection closed inside the header section")
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise HttpError(f"malformed header line {line[:80]!r}")
            key, value = name.strip().lower(), value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value

    def _read_body(self, method: str, status: int, version: str, headers: dict[str, str]) -> tuple[bytes, bool]:
        assert self._rfile is not None
        connection = headers.get("connection", "").lower()
        close = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
        if method == "HEAD" or status in (204, 304):
            return b"", close
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._read_chunked(), close
        length = headers.get("content-length")
        if length is not None:
            n = int(length)
            data = self._rfile.read(n)
            if len(data) != n:
                raise HttpError(f"body cut short: {len(data)} of {n} bytes")
            return data, close
        return self._rfile.read(), True  # delimited by the server closing the connection

    def _read_chunked(self) -> bytes:
        assert self._rfile is not None
        rfile = self._rfile
        chunks: list[bytes] = []
        while True:
            line = rfile.readline(65537)
            if not line:
                raise HttpError("connection closed inside a chunked body")
            size = int(line.split(b";", 1)[0], 16)
            if size == 0:
                while rfile.readline(65537) not in (b"\r\n", b"\n", b""):  # trailer section
                    pass
                return b"".join(chunks)
            chunk = rfile.read(size)
            if len(chunk) != size or rfile.read(2) != b"\r\n":
                raise HttpError("malformed chunk")
            chunks.append(chunk)


def _parse_status(line: bytes) -> tuple[str, int, str]:
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise HttpError(f"not an HTTP/1.x status line: {line[:80]!r}")
    return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else ""


# --- multipart/related --------------------------------------------------------------------------


def boundary_of(content_type: str) -> str:
    """The ``boundary`` parameter of a multipart Content-Type ("" if there is none)."""
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary":
            return value.strip().strip('"')
    return ""


def build_multipart(
    payloads: Sequence[bytes], boundary: str, part_type: str = "application/dicom", *, part_length: bool = False
) -> bytes:
    """A multipart/related body; ``part_length`` adds a Content-Length header to every part."""
    delimiter = b"--" + boundary.encode("ascii")
    chunks: list[bytes] = []
    for payload in payloads:
        head = b"%s\r\nContent-Type: %s\r\n" % (delimiter, part_type.encode("ascii"))
        if part_length:
            head += b"Content-Length: %d\r\n" % len(payload)
        chunks += (head, b"\r\n", payload, b"\r\n")
    chunks.append(delimiter + b"--\r\n")
    return b"".join(chunks)


def split_multipart(body: bytes, boundary: str) -> list[tuple[dict[str, str], memoryview]]:
    """Parts of a multipart body as (lower-cased headers, payload view). Raises ValueError if malformed.

    Scans for the delimiter (it does not trust part Content-Length headers), so it also checks that
    no part swallowed a neighbour.
    """
    delimiter = b"--" + boundary.encode("latin-1")
    view = memoryview(body)
    pos = body.find(delimiter)
    if pos < 0 or (pos and body[pos - 2 : pos] != b"\r\n"):
        raise ValueError("no opening delimiter")
    pos += len(delimiter)
    parts: list[tuple[dict[str, str], memoryview]] = []
    while not body.startswith(b"--", pos):
        start = body.find(b"\r\n", pos) + 2
        end = body.find(b"\r\n" + delimiter, start)
        if start < 2 or end < 0:
            raise ValueError("unterminated part")
        split = body.find(b"\r\n\r\n", start - 2, end + 2)  # start - 2: a part with no headers
        if split < 0:
            raise ValueError("part without a header/body separator")
        headers: dict[str, str] = {}
        if split > start:
            for line in body[start:split].decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, view[split + 4 : end]))
        pos = end + 2 + len(delimiter)
    return parts
