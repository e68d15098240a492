"""Settings of a DicomWeb kit: limits and policies, immutable once the kit is built."""

from __future__ import annotations

from typing import Literal

import msgspec

from .query.terms import DEFAULT_LIMIT

__all__ = ["Settings"]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Limits and policies of one DicomWeb kit.

    Attributes:
        max_request_bytes: largest STOW-RS body accepted (413 beyond it, also for a declared
            Content-Length).
        max_part_bytes: largest single instance in a STOW-RS body (``None``: only the body limit).
        max_parts: most parts in one STOW-RS body.
        max_part_header_bytes: largest header block of one part.
        max_query_terms: most match keys in one QIDO-RS query.
        qido_default_limit: rows returned when a query gives no ``limit``; PS3.18 §8.3.4.4 lets the
            server cap results, and a Warning header says when more rows exist.
        qido_max_limit: the cap on ``limit``.
        bulk_data_threshold: binary values longer than this are BulkDataURIs in metadata
            responses (PS3.18 §F.2.7), shorter ones InlineBinary.
        on_duplicate: what STOW-RS does with a SOP Instance UID that is already stored:
            ``"keep"`` the stored one and report success (a retried upload is harmless; Orthanc's
            default), ``"replace"`` it atomically, or ``"reject"`` the new one with Failure Reason
            0x0111.
        header_prefix_bytes: how much of each instance STOW-RS keeps in memory while streaming it
            to the blob store, to parse its header without reading the file twice. Headers longer
            than this are read back from the blob store.
        body_read_timeout: seconds STOW-RS waits for the next piece of a request body before it
            answers 408 and frees the worker for others (a stalled or trickling client).
        public_url: the service root as clients should see it (``https://pacs.example.org/dicom-web``),
            for the URLs responses carry (RetrieveURL, BulkDataURI, Location). ``None``: built
            from each request (Host header, mount prefix), which is right unless a client sends a
            Host header without its port (dicomweb-client does) or a proxy rewrites it.
        allow_delete: serve DELETE on studies, series and instances (not part of PS3.18; dcm4chee
            and Microsoft's server offer it). Off by default: DELETE is then 405.
        max_repair_bytes: largest instance that STOW-RS accepts without the Part 10 preamble and
            rewrites as a Part 10 file in memory (some clients, dicomweb-client among them, send
            such datasets).
        stow_bulk_memory_bytes: how many bytes of bulk data parts one metadata + bulk data STOW-RS
            request (``type="application/dicom+json"`` or ``+xml``) keeps in memory until its
            instances are built; later parts spill to an anonymous temporary file (``TMPDIR``).
        thumbnail_size: the side of the square a thumbnail fits in when the request gives no
            ``viewport`` (PS3.18 §10.4.1.1.4 leaves the size to the server).
        thumbnail_cache_bytes: the most bytes of rendered thumbnails the default in-memory cache
            keeps (0: no caching). A kit built with its own ``render_cache`` ignores it.
        max_rendered_document_bytes: largest Encapsulated PDF or Structured Report instance that a
            rendered request reads into memory (413 beyond it).
        ups_event_log_limit: the most UPS event reports kept for one subscriber (AE) that has not
            received them yet; beyond it the oldest are dropped. Reports are deleted as soon as they
            are sent on the AE's notification channel (PS3.18 §8.10).
        ups_channel_poll_interval: seconds between re-reads of a connected subscriber's event log
            when the event bus has not woken it, a safety net for lost bus notifications.
        redoc_js_url: where the API page ``{root}/docs`` loads ReDoc from (a CDN by default, as
            FastAPI does). Ignored when ``redoc_js_file`` is set.
        redoc_js_file: a local copy of ReDoc's ``redoc.standalone.js`` (npm package ``redoc``,
            ``bundles/``), served by the kit at ``{root}/docs/redoc.standalone.js`` for networks
            without internet access.
        cors_origins: origins (``https://viewer.example.org``, or ``*``) whose pages may call the
            service from a browser (viewers such as OHIF on another origin). Empty: no CORS
            headers at all, browsers then allow same-origin pages only.
        cors_origin_regex: origins matching this regular expression are allowed too.
        cors_allow_credentials: let browsers send cookies and HTTP authentication with
            cross-origin requests (the allowed origin is then named, never ``*``).
        cors_allow_headers: request headers a cross-origin page may send (``*``: any it asks for in
            its preflight, ``Authorization`` among them).
        cors_expose_headers: response headers a cross-origin page may read.
        cors_max_age: seconds a browser may cache a preflight answer.
        cors_allow_private_network: answer Chrome's Private Network Access preflights, for a
            viewer on a public origin calling a server on the hospital network.
        cross_origin_isolation: send ``Cross-Origin-Opener-Policy: same-origin`` and
            ``Cross-Origin-Embedder-Policy: require-corp`` on every response, which a viewer served
            from the same origin (OHIF's WebAssembly decoders use SharedArrayBuffer) needs.
        cross_origin_resource_policy: the ``Cross-Origin-Resource-Policy`` sent on every
            response; ``None``: ``same-origin`` with ``cross_origin_isolation``, else none.
        study_browser: serve a study browser for people at ``{root}/browse`` (study list, series
            thumbnails, a viewer of rendered images, zip downloads, upload by STOW-RS). Off by
            default in the library; ``dicomweb-kit serve`` turns it on (``--no-browser``: off).
    """

    max_request_bytes: int = 8 << 30
    max_part_bytes: int | None = None
    max_parts: int = 10_000
    max_part_header_bytes: int = 16 << 10
    max_query_terms: int = 100
    qido_default_limit: int = DEFAULT_LIMIT
    qido_max_limit: int = DEFAULT_LIMIT
    bulk_data_threshold: int = 1024
    on_duplicate: Literal["keep", "replace", "reject"] = "keep"
    header_prefix_bytes: int = 4 << 20
    max_repair_bytes: int = 512 << 20
    stow_bulk_memory_bytes: int = 64 << 20
    body_read_timeout: float = 60.0
    allow_delete: bool = False
    public_url: str | None = None
    thumbnail_size: int = 128
    thumbnail_cache_bytes: int = 32 << 20
    max_rendered_document_bytes: int = 64 << 20
    ups_event_log_limit: int = 10_000
    ups_channel_poll_interval: float = 5.0
    redoc_js_url: str = "https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"
    redoc_js_file: str | None = None
    cors_origins: tuple[str, ...] = ()
    cors_origin_regex: str | None = None
    cors_allow_credentials: bool = False
    cors_allow_headers: tuple[str, ...] = ("*",)
    cors_expose_headers: tuple[str, ...] = (
        "Warning", "Location", "Content-Location", "ETag", "Content-Range", "Accept-Ranges", "Allow",
        "Content-Disposition",
    )  # fmt: skip
    cors_max_age: int = 600
    cors_allow_private_network: bool = False
    cross_origin_isolation: bool = False
    cross_origin_resource_policy: Literal["same-origin", "same-site", "cross-origin"] | None = None
    study_browser: bool = False
