"""The ``dicomweb-kit`` command: serve, import, check, and upgrade the database schema.

The core never imports an adapter; the command names its backends as dotted paths and imports
them lazily (as fsspec's ``known_implementations`` does), so the import boundary holds.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["BackendConfig", "build_kit", "create_standalone_app", "main"]

log = logging.getLogger("dicomweb_kit")

FILE_BLOB_STORE = "dicomweb_kit_adapters.filesystem:FileBlobStore"
SQL_INDEX = "dicomweb_kit_adapters.sql:SqlIndex"
MEMORY_BLOB_STORE = "dicomweb_kit_adapters.memory:MemoryBlobStore"
MEMORY_INDEX = "dicomweb_kit_adapters.memory:MemoryIndex"
POSTGRES_EVENT_BUS = "dicomweb_kit_adapters.sql:PostgresEventBus"

ENV_DATA_DIR = "DICOMWEB_KIT_DATA_DIR"
ENV_DATABASE_URL = "DICOMWEB_KIT_DATABASE_URL"
ENV_STORAGE = "DICOMWEB_KIT_STORAGE"
ENV_ROOT = "DICOMWEB_KIT_ROOT"
ENV_ALLOW_DELETE = "DICOMWEB_KIT_ALLOW_DELETE"
ENV_PUBLIC_URL = "DICOMWEB_KIT_PUBLIC_URL"
ENV_EXTRA_INDEXED = "DICOMWEB_KIT_EXTRA_INDEXED"
ENV_CORS_ORIGINS = "DICOMWEB_KIT_CORS_ORIGINS"
ENV_CORS_ALLOW_CREDENTIALS = "DICOMWEB_KIT_CORS_ALLOW_CREDENTIALS"
ENV_CROSS_ORIGIN_ISOLATION = "DICOMWEB_KIT_CROSS_ORIGIN_ISOLATION"
ENV_REDOC_JS = "DICOMWEB_KIT_REDOC_JS"
ENV_STUDY_BROWSER = "DICOMWEB_KIT_STUDY_BROWSER"
ENV_TENANT_PATH = "DICOMWEB_KIT_TENANT_PATH"
ENV_TENANT_HEADER = "DICOMWEB_KIT_TENANT_HEADER"
ENV_TENANTS = "DICOMWEB_KIT_TENANTS"
DEFAULT_DATA_DIR = "dicomweb-data"


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise SystemExit(
            f"dicomweb-kit: {module} needs packages that are not installed ({exc.name}): "
            "pip install 'dicomweb-kit[serve]' (or '[sql]' for PostgreSQL/MariaDB)"
        ) from exc


class BackendConfig:
    """Where the data lives: ``memory``, or a database URL plus a blob directory.

    Defaults (the embedded default): SQLite at ``<data dir>/index.sqlite3`` and blobs under
    ``<data dir>/blobs``, with ``<data dir>`` = ``./dicomweb-data``. Environment variables
    ``DICOMWEB_KIT_DATA_DIR``, ``DICOMWEB_KIT_DATABASE_URL`` and ``DICOMWEB_KIT_STORAGE`` set them
    too; command-line options win.
    """

    def __init__(
        self,
        *,
        data_dir: str | None = None,
        database_url: str | None = None,
        storage: str | None = None,
        extra_indexed: Sequence[str] = (),
    ) -> None:
        base = Path(data_dir or os.environ.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR)
        from_env = [a.strip() for a in os.environ.get(ENV_EXTRA_INDEXED, "").split(",") if a.strip()]
        self.extra_indexed = list(extra_indexed) or from_env
        self.database_url = database_url or os.environ.get(ENV_DATABASE_URL) or ""
        self.storage = storage or os.environ.get(ENV_STORAGE) or ""
        self.memory = self.database_url == "memory" or self.storage == "memory"
        if not self.memory:
            self.database_url = self.database_url or f"sqlite:///{(base / 'index.sqlite3').resolve()}"
            self.storage = str(Path(self.storage or base / "blobs").resolve())

    def export(self) -> None:
        """Hand the choice to uvicorn workers (separate processes) through the environment."""
        os.environ[ENV_DATABASE_URL] = "memory" if self.memory else self.database_url
        os.environ[ENV_STORAGE] = "memory" if self.memory else self.storage
        os.environ[ENV_EXTRA_INDEXED] = ",".join(self.extra_indexed)

    def describe(self) -> str:
        if self.memory:
            return "in memory: data is lost when the server stops"
        extra = f", extra indexed attributes: {', '.join(self.extra_indexed)}" if self.extra_indexed else ""
        return f"index {_redact(self.database_url)}, blobs in {self.storage}{extra}"

    def adapters(self) -> tuple[Any, Any]:
        if self.memory:
            return _load(MEMORY_BLOB_STORE)(), _load(MEMORY_INDEX)()
        Path(self.storage).mkdir(parents=True, exist_ok=True)
        if self.database_url.startswith("sqlite:///"):
            Path(self.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        index = _load(SQL_INDEX)(self.database_url, extra_indexed=self.extra_indexed)
        return _load(FILE_BLOB_STORE)(self.storage), index

    @property
    def postgresql(self) -> bool:
        return not self.memory and self.database_url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")

    def event_bus(self) -> Any:
        """The UPS event bus of ``serve``: PostgreSQL LISTEN/NOTIFY on PostgreSQL (a change in one
        worker wakes the notification channels of every worker at once); else ``None``, the
        kit's in-memory bus. With SQLite or MariaDB the subscriptions and event logs are still in
        the shared database, so a channel on another worker (or machine) picks a report up on its
        next poll of the log (``Settings.ups_channel_poll_interval``, 5 s) instead of at once."""
        return _load(POSTGRES_EVENT_BUS)(self.database_url) if self.postgresql else None


def _redact(url: str) -> str:
    """A database URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest and ":" in rest.split("@", 1)[0]:
        user = rest.split("@", 1)[0].split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{rest.split('@', 1)[1]}"
    return url


def build_kit(
    config: BackendConfig, *, allow_delete: bool = False, events: bool = False, study_browser: bool = False
) -> Any:
    from .kit import DicomWeb
    from .settings import Settings

    blobs, index = config.adapters()
    bus = config.event_bus() if events else None
    settings = Settings(
        allow_delete=allow_delete,
        public_url=os.environ.get(ENV_PUBLIC_URL) or None,
        study_browser=study_browser,
        **_cross_origin_settings(),
    )
    return DicomWeb(blobs=blobs, index=index, settings=settings, events=bus, tenants=_tenant_resolver())


def _tenant_resolver() -> Any:
    """``serve --tenant-path`` / ``--tenant-header`` (through the environment, for the workers)."""
    from .web.tenants import TenantFromHeader, TenantFromPath

    path, header = os.environ.get(ENV_TENANT_PATH, ""), os.environ.get(ENV_TENANT_HEADER, "")
    known = frozenset(t.strip() for t in os.environ.get(ENV_TENANTS, "").split(",") if t.strip()) or None
    if path:
        return TenantFromPath(path, known=known)
    return TenantFromHeader(header, known=known) if header else None


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _cross_origin_settings() -> dict[str, Any]:
    """CORS, cross-origin isolation and the ReDoc script, from the environment (``serve`` puts its
    options there, for its workers)."""
    found: dict[str, Any] = {
        "cors_origins": tuple(o.strip() for o in os.environ.get(ENV_CORS_ORIGINS, "").split(",") if o.strip()),
        "cors_allow_credentials": _flag(ENV_CORS_ALLOW_CREDENTIALS),
        "cross_origin_isolation": _flag(ENV_CROSS_ORIGIN_ISOLATION),
    }
    redoc = os.environ.get(ENV_REDOC_JS, "").strip()
    if redoc:
        found["redoc_js_url" if _is_url(redoc) else "redoc_js_file"] = redoc
    return found


def create_standalone_app() -> Any:
    """The app ``serve`` runs (a factory, so each uvicorn worker builds its own kit)."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    root = os.environ.get(ENV_ROOT, "/dicom-web").rstrip("/")
    kit = build_kit(
        BackendConfig(),
        allow_delete=os.environ.get(ENV_ALLOW_DELETE) == "1",
        events=True,
        study_browser=os.environ.get(ENV_STUDY_BROWSER, "1") != "0",  # on unless --no-browser
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with kit.lifespan(app):
            # Everything loaded so far (pydicom's dictionaries, codecs, routes) lives as long as
            # the process: move it out of the collector's way, or every full collection walks it
            # (a ~40 ms pause every few dozen requests, measured).
            gc.collect()
            gc.freeze()
            yield

    if os.environ.get(ENV_TENANT_PATH):
        root = ""  # the tenant path template is the whole prefix
    return Starlette(routes=[Mount(root or "/", app=kit.app)], lifespan=lifespan)


def _backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help=f"where the embedded default keeps its data (default ./{DEFAULT_DATA_DIR})")
    parser.add_argument(
        "--database-url",
        help="index database: sqlite:///path, postgresql://user@host/db, mysql://user@host/db, or 'memory'",
    )
    parser.add_argument("--storage", help="blob directory (default <data dir>/blobs), or 'memory'")
    parser.add_argument(
        "--index-attribute",
        action="append",
        default=[],
        metavar="KEYWORD",
        help="also index this attribute for QIDO matching (repeatable; run `reindex` after adding one)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dicomweb-kit", description="An embeddable DICOMweb server.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve DICOMweb over HTTP (needs the `serve` extra)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8042, help="port (default 8042, as Orthanc)")
    serve.add_argument("--root", default="/dicom-web", help="path prefix of the service (default /dicom-web)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--allow-delete", action="store_true", help="enable DELETE of studies, series, instances")
    serve.add_argument(
        "--no-browser",
        action="store_true",
        help=f"do not serve the study browser at <root>/browse (env {ENV_STUDY_BROWSER}=0)",
    )
    serve.add_argument(
        "--public-url",
        help=f"the service root clients see, for URLs in responses (env {ENV_PUBLIC_URL}; default: from the request)",
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help=f"let pages of this origin (https://viewer.example.org, or *) call the service (repeatable; "
        f"env {ENV_CORS_ORIGINS}, comma-separated)",
    )
    serve.add_argument(
        "--cors-allow-credentials",
        action="store_true",
        help=f"let those pages send cookies and HTTP authentication (env {ENV_CORS_ALLOW_CREDENTIALS}=1)",
    )
    serve.add_argument(
        "--cross-origin-isolation",
        action="store_true",
        help="send COOP/COEP/CORP headers (a viewer served from the same origin, e.g. OHIF's decoders, needs them; "
        f"env {ENV_CROSS_ORIGIN_ISOLATION}=1)",
    )
    serve.add_argument(
        "--redoc-js",
        metavar="URL|FILE",
        help=f"ReDoc for {{root}}/docs: a URL, or a copy of redoc.standalone.js the server serves (env {ENV_REDOC_JS})",
    )
    tenancy = serve.add_mutually_exclusive_group()
    tenancy.add_argument(
        "--tenant-path",
        metavar="TEMPLATE",
        help="serve one archive per tenant under this path, e.g. /tenants/{tenant}/dicom-web (replaces --root; "
        f"env {ENV_TENANT_PATH})",
    )
    tenancy.add_argument(
        "--tenant-header",
        metavar="NAME",
        help=f"serve one archive per tenant, named by this request header, e.g. X-Tenant (env {ENV_TENANT_HEADER})",
    )
    serve.add_argument(
        "--tenants",
        metavar="T1,T2",
        help=f"the tenants that exist (others get 404; default: any name, its storage created on first use; "
        f"env {ENV_TENANTS})",
    )
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    _backend_options(serve)

    importer = commands.add_parser("import", help="store folders of DICOM files through the STOW-RS ingest path")
    importer.add_argument("paths", nargs="+", help="files or folders (searched recursively)")
    importer.add_argument("--jobs", type=int, default=4, help="instances stored at once (default 4)")
    importer.add_argument("--tenant", help="store into this tenant's archive (as served with --tenant-path/-header)")
    _backend_options(importer)

    check = commands.add_parser("check", help="verify the index against the blobs")
    check.add_argument("--repair", action="store_true", help="drop records without blobs, delete unreferenced blobs")
    check.add_argument("--deep", action="store_true", help="also re-read every blob's header (slow)")
    check.add_argument("--tenant", help="check this tenant's archive")
    _backend_options(check)

    reindex = commands.add_parser("reindex", help="rebuild the indexed attributes from stored metadata")
    reindex.add_argument("--tenant", help="reindex this tenant's archive")
    _backend_options(reindex)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="create or upgrade the index schema")
    upgrade.add_argument("--tenant", help="create or upgrade this tenant's index")
    _backend_options(upgrade)

    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", "info").upper(), format="%(levelname)s: %(message)s")
    config = BackendConfig(
        data_dir=args.data_dir,
        database_url=args.database_url,
        storage=args.storage,
        extra_indexed=args.index_attribute,
    )
    if args.command == "serve":
        return _serve(args, config)
    from . import operations

    if args.command == "import":
        return operations.run(
            operations.import_paths(build_kit(config), args.paths, jobs=args.jobs, tenant=args.tenant)
        )
    if args.command == "check":
        return operations.run(
            operations.check(build_kit(config), repair=args.repair, deep=args.deep, tenant=args.tenant)
        )
    if args.command == "reindex":
        return operations.run(operations.reindex(build_kit(config), tenant=args.tenant))
    return operations.run(operations.upgrade(build_kit(config), tenant=args.tenant))


def _serve(args: argparse.Namespace, config: BackendConfig) -> int:
    try:
        import uvicorn
    except ImportError:
        print("dicomweb-kit serve needs uvicorn: pip install 'dicomweb-kit[serve]'", file=sys.stderr)
        return 2
    root = "/" + args.root.strip("/")
    os.environ[ENV_ROOT] = root
    os.environ[ENV_ALLOW_DELETE] = "1" if args.allow_delete else "0"
    if args.no_browser:
        os.environ[ENV_STUDY_BROWSER] = "0"
    if args.public_url:
        os.environ[ENV_PUBLIC_URL] = args.public_url
    if args.cors_origin:
        os.environ[ENV_CORS_ORIGINS] = ",".join(args.cors_origin)
    if args.cors_allow_credentials:
        os.environ[ENV_CORS_ALLOW_CREDENTIALS] = "1"
    if args.cross_origin_isolation:
        os.environ[ENV_CROSS_ORIGIN_ISOLATION] = "1"
    if args.tenant_path:
        from .web.tenants import TenantFromPath

        try:
            TenantFromPath(args.tenant_path)
        except ValueError as bad:
            print(f"dicomweb-kit serve: --tenant-path: {bad}", file=sys.stderr)
            return 2
        os.environ[ENV_TENANT_PATH] = args.tenant_path
    if args.tenant_header:
        os.environ[ENV_TENANT_HEADER] = args.tenant_header
    if args.tenants:
        if not (args.tenant_path or args.tenant_header):
            print("dicomweb-kit serve: --tenants needs --tenant-path or --tenant-header", file=sys.stderr)
            return 2
        from .errors import InvalidRequest
        from .tenancy import validate_tenant

        try:
            [validate_tenant(t.strip()) for t in args.tenants.split(",") if t.strip()]
        except InvalidRequest as bad:
            print(f"dicomweb-kit serve: --tenants: {bad.message}", file=sys.stderr)
            return 2
        os.environ[ENV_TENANTS] = args.tenants
    redoc = (args.redoc_js or os.environ.get(ENV_REDOC_JS, "")).strip()
    if redoc and not _is_url(redoc):
        if not Path(redoc).is_file():
            print(f"dicomweb-kit serve: --redoc-js {redoc}: no such file (redoc.standalone.js)", file=sys.stderr)
            return 2
        redoc = str(Path(redoc).resolve())  # workers may start elsewhere
    if redoc:
        os.environ[ENV_REDOC_JS] = redoc
    config.export()
    log.info("storage: %s", config.describe())
    if config.memory and args.workers > 1:
        log.warning("storage: each of the %d workers has its own memory store", args.workers)
    if args.workers > 1 and not config.memory and not config.postgresql:
        log.info("UPS events: workers see each other's events on their next poll of the event log (5 s)")
    if args.tenant_path:
        log.info("DICOMweb service of each tenant at http://%s:%d%s", args.host, args.port, args.tenant_path)
    else:
        log.info("DICOMweb service at http://%s:%d%s", args.host, args.port, root if root != "/" else "")
    if args.tenant_header:
        log.info("tenants: named by the %s header of each request", args.tenant_header)
    if os.environ.get(ENV_STUDY_BROWSER, "1") != "0":
        where = args.tenant_path or (root if root != "/" else "")
        log.info("study browser at http://%s:%d%s/browse", args.host, args.port, where)
    uvicorn.run(
        "dicomweb_kit.cli:create_standalone_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
