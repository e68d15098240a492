"""HTTP for archive downloads: ``GET /studies/{s}[/series/{r}[/instances/{i}]]`` as ``application/zip``.

The URL is the WADO-RS retrieve's (PS3.18 §10.4.1.1.1); ``Endpoints.retrieve`` hands the request
here when negotiation prefers ``application/zip`` to ``multipart/related; type="application/dicom"``
(which stays the default, Table 10.4.4-1). See :mod:`dicomweb_kit.services.archive`.

Query parameters: ``accept`` (PS3.18 §8.3.3.1, overrides the Accept header) and ``dicomdir``
(``true``/``false``, default ``false``): a DICOM File-set with a DICOMDIR (PS3.12 Annex V), the
choice Orthanc offers as ``/media`` beside ``/archive``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydicom.uid import AllTransferSyntaxes
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..errors import InvalidRequest, NotAcceptable
from ..media_types import TRANSFER_SYNTAX_MEDIA_TYPES, Offer, negotiate
from ..resources import ResourceKey
from ..services import archive

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = ["download", "wants_zip"]

# The two representations with every transfer syntax, only to rank them by the client's
# preference; the one chosen then negotiates for real (what the stored instances allow).
_ANY_SYNTAX = tuple(sorted({*map(str, AllTransferSyntaxes), *TRANSFER_SYNTAX_MEDIA_TYPES}))
_OFFERS = [
    Offer("multipart/related", part_type="application/dicom", transfer_syntaxes=_ANY_SYNTAX),
    Offer(archive.ZIP, transfer_syntaxes=_ANY_SYNTAX),
]
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no", ""})


def _accept_param(request: Request) -> str | None:
    return request.query_params.get("accept")  # PS3.18 §8.3.3.1


def wants_zip(request: Request) -> bool:
    """Does the client prefer ``application/zip`` to the retrieve's multipart response?"""
    try:
        choice = negotiate(request.headers.get("accept"), _OFFERS, accept_param=_accept_param(request))
    except NotAcceptable:
        return False  # neither: the retrieve answers 406, naming what it can send
    return choice.offer.media_type == archive.ZIP


def _dicomdir(request: Request) -> bool:
    value = request.query_params.get("dicomdir", "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidRequest(f"dicomdir must be true or false, not {value[:40]!r}")


async def download(kit: DicomWeb, request: Request) -> Response:
    """The study, series or instance as a streamed ZIP archive: 404 unknown, 406 not acceptable."""
    params = request.path_params
    scope = ResourceKey.parse(params.get("study"), params.get("series"), params.get("instance"))
    plan = await archive.plan_archive(
        kit,
        scope,
        request.headers.get("accept"),
        accept_param=_accept_param(request),
        dicomdir=_dicomdir(request),
    )
    # RFC 6266: a download, under a name made of UIDs (digits and dots: nothing to quote).
    headers = {"Content-Disposition": f'attachment; filename="{plan.filename}"'}
    return StreamingResponse(archive.archive_body(kit, plan), headers=headers, media_type=archive.ZIP)
