"""The ``dicomweb-kit`` command: serve the DICOMweb service standalone.

The core never imports an adapter; the command names its backends as dotted paths and imports
them lazily (as fsspec's ``known_implementations`` does), so the import boundary holds.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["create_standalone_app", "main"]

log = logging.getLogger("dicomweb_kit")

BACKENDS = {
    "memory": ("dicomweb_kit_adapters.memory:MemoryBlobStore", "dicomweb_kit_adapters.memory:MemoryIndex"),
}
_ROOT_ENV = "DICOMWEB_KIT_ROOT"
_BACKEND_ENV = "DICOMWEB_KIT_BACKEND"


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def create_standalone_app() -> Any:
    """The app ``serve`` runs (a factory, so each uvicorn worker builds its own)."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from .kit import DicomWeb

    root = os.environ.get(_ROOT_ENV, "/dicom-web").rstrip("/")
    blob_path, index_path = BACKENDS[os.environ.get(_BACKEND_ENV, "memory")]
    kit = DicomWeb(blobs=_load(blob_path)(), index=_load(index_path)())
    return Starlette(routes=[Mount(root or "/", app=kit.app)], lifespan=kit.lifespan)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dicomweb-kit", description="An embeddable DICOMweb server.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve DICOMweb over HTTP (needs the `serve` extra)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8042, help="port (default 8042, as Orthanc)")
    serve.add_argument("--root", default="/dicom-web", help="path prefix of the service (default /dicom-web)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        print("dicomweb-kit serve needs uvicorn: pip install 'dicomweb-kit[serve]'", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s: %(message)s")
    root = "/" + args.root.strip("/")
    os.environ[_ROOT_ENV] = root
    backend = os.environ.setdefault(_BACKEND_ENV, "memory")
    if backend == "memory":
        log.warning("storage: in memory (persistent storage is not available yet): data is lost when the server stops")
        if args.workers > 1:
            log.warning("storage: each of the %d workers has its own memory store", args.workers)
    log.info("DICOMweb service at http://%s:%d%s", args.host, args.port, root if root != "/" else "")
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
