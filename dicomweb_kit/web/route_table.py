"""The one table of DICOMweb resources this kit serves, as data.

Every resource is declared once: its path template, and per method the handler, a summary, the
PS3.18 section, query parameters, request and response media types, status codes with their
meaning, and the condition under which it exists. The Starlette routes (``web/app.py``), the
Capabilities WADL (``web/capabilities.py``, PS3.18 §8.9 and Annex H), the OpenAPI document
(``web/openapi.py``), ``Allow`` headers and 405 responses are all generated from it.

Media types that depend on installed extras (video encoders, pixel codecs, JPEG 2000 in Pillow)
are functions, evaluated when a document is generated; settings-dependent resources (DELETE)
carry a :class:`Condition` evaluated against the kit.

Adding a resource: put its handler object on :class:`Handlers`, and a :class:`Resource` in
:func:`_table` whose operations pick the handler (``lambda h: h.thing.get``). The route, the
trailing-slash copy, OPTIONS, 405, the WADL and the OpenAPI entry follow. (WebSockets are not
resources here: ``web/app.py`` adds them after the HTTP routes.)
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from starlette.requests import Request
from starlette.responses import Response

from ..codecs.pixel_codecs import encodable_syntaxes
from ..media_types import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_LE, TRANSFER_SYNTAX_MEDIA_TYPES
from ..pixels.encode import image_media_types, video_media_types
from ..resources import Level
from .bulkdata import BulkDataEndpoints
from .changefeed import ChangeFeedEndpoints
from .endpoints import Endpoints
from .frames import FrameEndpoints
from .rendered import RenderedEndpoints
from .ups import WorkitemEndpoints
from .ups_events import UpsEventEndpoints

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = [
    "RESOURCES",
    "WADL_TYPE",
    "Condition",
    "Handler",
    "Handlers",
    "Operation",
    "Param",
    "Resource",
    "path_params",
    "served",
    "uri_template",
]

Handler = Callable[[Request], Awaitable[Response]]
WADL_TYPE = "application/vnd.sun.wadl+xml"
MediaTypes = tuple[str, ...] | Callable[[], tuple[str, ...]]


class Handlers:
    """The handler objects of one kit, which the table's handler factories pick from."""

    def __init__(self, kit: DicomWeb) -> None:
        self.kit = kit
        self.wado = Endpoints(kit)
        self.rendered = RenderedEndpoints(kit)
        self.frames = FrameEndpoints(kit)
        self.bulk = BulkDataEndpoints(kit)
        self.ups = WorkitemEndpoints(kit)
        self.events = UpsEventEndpoints(kit)
        self.changefeed = ChangeFeedEndpoints(kit)


@dataclass(frozen=True)
class Param:
    """A query parameter (``style="query"``) or request header (``style="header"``)."""

    name: str
    description: str
    type: Literal["string", "integer", "boolean"] = "string"
    enum: tuple[str, ...] = ()
    repeating: bool = False
    minimum: int | None = None
    maximum: int | None = None
    style: Literal["query", "header"] = "query"


@dataclass(frozen=True)
class Condition:
    """When an operation exists: ``test(kit)``; ``description`` says it to people (405 message, docs)."""

    description: str
    test: Callable[[DicomWeb], bool]


@dataclass(frozen=True)
class Operation:
    """One method of one resource."""

    method: str
    name: str  # WADL method id and OpenAPI operationId, PS3.18's transaction name where it has one
    summary: str
    section: str  # where PS3.18 defines it ("PS3.18 §10.6"), or why it is not PS3.18
    handler: Callable[[Handlers], Handler]
    statuses: Mapping[int, str]
    params: tuple[Param, ...] = ()
    request_types: MediaTypes = ()
    response_types: MediaTypes = ()
    condition: Condition | None = None
    #: More for people (OpenAPI description, WADL doc), beyond the summary.
    notes: str = ""
    #: Statuses whose body is in ``response_types``; by default the 2xx ones but 204. Error
    #: statuses always have a text/plain body (``web/error_handlers.py``).
    payload_statuses: frozenset[int] | None = None

    def has_payload(self, status: int) -> bool:
        if self.payload_statuses is not None:
            return status in self.payload_statuses
        return 200 <= status < 300 and status != 204 and bool(self.responses())

    def requests(self) -> tuple[str, ...]:
        return self.request_types() if callable(self.request_types) else self.request_types

    def responses(self) -> tuple[str, ...]:
        return self.response_types() if callable(self.response_types) else self.response_types

    def exists(self, kit: DicomWeb) -> bool:
        return self.condition is None or self.condition.test(kit)


@dataclass(frozen=True)
class Resource:
    """A path template (Starlette syntax: ``{name}``, ``{name:path}``) and its methods."""

    path: str
    operations: tuple[Operation, ...]


_PARAM = re.compile(r"{(\w+)(?::\w+)?}")
_CONVERTOR = re.compile(r"{(\w+):\w+}")


def uri_template(path: str, /) -> str:
    """``path`` without Starlette convertors, as WADL and OpenAPI write it (``{path:path}`` → ``{path}``)."""
    return _CONVERTOR.sub(r"{\1}", path)


def path_params(path: str, /) -> list[str]:
    """The names of the path parameters of ``path``, in order."""
    return _PARAM.findall(path)


def served(kit: DicomWeb, /) -> list[Resource]:
    """The resources ``kit`` serves with its settings: only operations whose condition holds,
    only resources with an operation left."""
    found = []
    for resource in RESOURCES:
        operations = tuple(op for op in resource.operations if op.exists(kit))
        if operations:
            found.append(Resource(resource.path, operations))
    return found


# --------------------------------------------------------------------------------------------
# Path parameters, conditions, media types
# --------------------------------------------------------------------------------------------

UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"

#: Description, and a regex (or None) of each path parameter.
PATH_PARAMS: Mapping[str, tuple[str, str | None]] = {
    "study": ("Study Instance UID (0020,000D)", UID_PATTERN),
    "series": ("Series Instance UID (0020,000E)", UID_PATTERN),
    "instance": ("SOP Instance UID (0008,0018)", UID_PATTERN),
    "frames": ("Frame numbers, from 1, comma-separated, in order (PS3.18 §10.4.1.1.6)", r"^[0-9]+(,[0-9]+)*$"),
    "path": ("The tag path of a bulk data value, as in the BulkDataURI of the metadata (PS3.18 §10.4.1.1.5)", None),
    "workitem": (
        "SOP Instance UID of the workitem; for subscriptions also the Worklist (1.2.840.10008.5.1.4.34.5) "
        "or Filtered Worklist (1.2.840.10008.5.1.4.34.5.1) UID",
        UID_PATTERN,
    ),
    "ae_title": ("AE Title of the subscriber (PS3.5 §6.2 AE: 1-16 characters)", None),
}

ALLOW_DELETE = Condition(
    "Settings(allow_delete=True) (`dicomweb-kit serve --allow-delete`)", lambda kit: kit.settings.allow_delete
)

DICOM_JSON = "application/dicom+json"
DICOM_XML = "application/dicom+xml"
TEXT = "text/plain"
JSON_TYPES = (DICOM_JSON, "application/json")
LIST_TYPES = (*JSON_TYPES, f'multipart/related; type="{DICOM_XML}"')
ONE_TYPES = (*JSON_TYPES, DICOM_XML)
DATASET_BODY = (DICOM_JSON, "application/json", DICOM_XML)
# PS3.18 §10.5.1.2: Part 10 instances, or metadata (DICOM JSON or XML) with its bulk data parts.
STOW_BODY = tuple(f'multipart/related; type="{kind}"' for kind in ("application/dicom", DICOM_JSON, DICOM_XML))
ZIP = "application/zip"


def retrieve_types() -> tuple[str, ...]:
    """PS3.18 §10.4.4: instances as ``multipart/related; type="application/dicom"``, with each
    transfer syntax this installation can produce (Explicit VR Little Endian always, the
    ``codecs`` extra adds compressed ones), ``*`` (as stored), and application/zip."""
    syntaxes = sorted({EXPLICIT_VR_LE, DEFLATED_EXPLICIT_VR_LE, *encodable_syntaxes()})
    base = 'multipart/related; type="application/dicom"'
    return (base, *(f"{base}; transfer-syntax={ts}" for ts in [*syntaxes, "*"]), ZIP)


def bulk_types() -> tuple[str, ...]:
    """PS3.18 Tables 8.7.3-4, -5: bulk data and frames, uncompressed or in their compressed media types."""
    kinds = dict.fromkeys(TRANSFER_SYNTAX_MEDIA_TYPES.values())
    return (*(f'multipart/related; type="{kind}"' for kind in kinds), "application/octet-stream")


def frame_types() -> tuple[str, ...]:
    """Frames: like bulk data, and a single frame as a bare image (``Accept: image/jpeg``)."""
    single = tuple(kind for kind in dict.fromkeys(TRANSFER_SYNTAX_MEDIA_TYPES.values()) if kind.startswith("image/"))
    return (*bulk_types(), *single)


def rendered_types() -> tuple[str, ...]:
    """PS3.18 §8.7.4, Table 8.7.4-1: images this installation encodes (JPEG 2000 needs Pillow
    built with OpenJPEG), animated GIF and video (the ``video`` extra) for multi-frame images,
    PDF and Structured Report text renderings."""
    images = image_media_types()
    return (
        *images,
        *video_media_types(),
        *(f'multipart/related; type="{kind}"' for kind in images),
        "application/pdf",
        "text/html",
        TEXT,
        "text/xml",
    )


def thumbnail_types() -> tuple[str, ...]:
    return image_media_types()


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------

ACCEPT = Param(
    "accept",
    "Acceptable media types of the response; overrides the Accept header (PS3.18 §8.3.3.1)",
)

QIDO_CONTROL = (
    Param("limit", "The most results to return (PS3.18 §8.3.4.4); capped by the server", "integer", minimum=0),
    Param("offset", "Results to skip before the first returned (PS3.18 §8.3.4.4)", "integer", minimum=0),
    Param(
        "includefield",
        "Attributes to return besides the defaults: keywords or 8-digit tags, comma-separated, or `all`"
        " (PS3.18 §8.3.4.3)",
        repeating=True,
    ),
    Param("fuzzymatching", "Fuzzy semantic matching of person names (PS3.18 §8.3.4.2)", "boolean"),
    Param(
        "emptyvaluematching",
        "Match attributes with no value too (PS3.18 §8.3.4.5; not performed here, a Warning says so)",
        "boolean",
    ),
    Param(
        "multiplevaluematching",
        "Match any of several values (PS3.18 §8.3.4.6; not performed here, a Warning says so)",
        "boolean",
    ),
    Param(
        "orderby",
        "Sort keys, comma-separated keywords or tags, `-` prefix for descending",
        repeating=True,
    ),
    ACCEPT,
)


def _keys(*names: str) -> tuple[Param, ...]:
    # PS3.18 §8.3.4.1: `{attributeID}={value}`; any attribute of the dictionary is a match key
    # here, these are the ones PS3.18 Table 10.6.1-5 requires at each level.
    return tuple(Param(name, f"Match key {name} (PS3.4 §C.2.2.2 matching)") for name in names)


STUDY_KEYS = _keys(
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ModalitiesInStudy",
    "ReferringPhysicianName",
    "PatientName",
    "PatientID",
    "StudyInstanceUID",
    "StudyID",
)
SERIES_KEYS = _keys("Modality", "SeriesInstanceUID", "SeriesNumber", "PerformedProcedureStepStartDate")
INSTANCE_KEYS = _keys("SOPClassUID", "SOPInstanceUID", "InstanceNumber")
WORKITEM_KEYS = _keys(
    "PatientName",
    "PatientID",
    "ProcedureStepState",
    "ScheduledProcedureStepStartDateTime",
    "ScheduledStationNameCodeSequence.CodeValue",
    "InputReadinessState",
)

RENDER_PARAMS = (
    Param(
        "window",
        "center,width[,function]: the VOI window; function is linear, linear-exact or sigmoid (PS3.18 §8.3.5.1.3)",
    ),
    Param("viewport", "vw,vh[,sx,sy,sw,sh]: the size of the image, and the source region (PS3.18 §8.3.5.1.2)"),
    Param("quality", "Quality of a lossy rendering, 1-100 (PS3.18 §8.3.5.1.4)", "integer", minimum=1, maximum=100),
    Param("annotation", "Burn in annotations: patient, technique, comma-separated (PS3.18 §8.3.5.1.1)"),
    ACCEPT,
)
THUMBNAIL_PARAMS = (Param("viewport", "vw,vh: the size of the thumbnail (PS3.18 §8.3.5.2)"), ACCEPT)
DICOMDIR = Param(
    "dicomdir",
    "With application/zip: a DICOM File-set with a DICOMDIR (PS3.12 Annex V) instead of readable names",
    "boolean",
)
TRANSACTION = Param("transaction", "The Transaction UID of the workitem, given when it was claimed (PS3.18 §11.6.1)")

# --------------------------------------------------------------------------------------------
# Status codes (PS3.18 §8.5 and each transaction's table)
# --------------------------------------------------------------------------------------------

BAD = {400: "Bad request: a malformed UID, query parameter or payload (the message says which)"}
# A path segment with a "/" or a line break matches no route: 404 too.
NOT_FOUND = {404: "No such resource"}
NOT_ACCEPTABLE = {406: "None of the acceptable media types can be produced (the message lists what can)"}
SEARCH_STATUSES = {200: "The matches (an empty list when nothing matches)", **BAD, **NOT_ACCEPTABLE}
RETRIEVE_STATUSES = {200: "The representation", **BAD, **NOT_FOUND, **NOT_ACCEPTABLE}
STOW_STATUSES = {
    200: "Every instance was stored",
    202: "Some instances were stored, others failed or carried warnings (see the response dataset)",
    **BAD,
    408: "The request body stalled",
    409: "No instance was stored (each failure is in the response dataset)",
    413: "The body or an instance is larger than the server accepts",
    415: "The Content-Type is not multipart/related of DICOM instances or of DICOM JSON/XML metadata",
    **NOT_ACCEPTABLE,
}
UPS_BODY_STATUSES = {
    **BAD,
    **NOT_FOUND,
    409: "The workitem's state does not allow it (the Warning header gives the PS3.18 text)",
    413: "The payload is larger than a workitem may be",
    415: "The payload is neither DICOM JSON nor DICOM XML",
}

_S = "/studies/{study}"
_R = _S + "/series/{series}"
_I = _R + "/instances/{instance}"
_F = _I + "/frames/{frames}"
_LEVELS = (("Study", _S), ("Series", _R), ("Instance", _I))


def _search(level: Level) -> Callable[[Handlers], Handler]:
    return lambda h: h.wado.search(level)


QIDO_NOTES = (
    "Match keys: any attribute keyword or 8-digit tag, not only those listed (PS3.18 §8.3.4.1); "
    "a dotted path (Sequence.Keyword) is Sequence Matching. Results carry the attributes of PS3.18 "
    "§10.6.3.3 for the level, and a Warning header when `limit` cut them short."
)


def _qido(name: str, summary: str, level: Level, keys: tuple[Param, ...], *, scoped: bool = False) -> Operation:
    return Operation(
        "GET",
        name,
        summary,
        "PS3.18 §10.6",
        _search(level),
        {**SEARCH_STATUSES, **NOT_FOUND} if scoped else SEARCH_STATUSES,
        params=(*keys, *QIDO_CONTROL),
        response_types=LIST_TYPES,
        notes=QIDO_NOTES,
    )


def _stow(name: str, summary: str) -> Operation:
    return Operation(
        "POST",
        name,
        summary,
        "PS3.18 §10.5",
        lambda h: h.wado.store,
        STOW_STATUSES,
        params=(ACCEPT,),
        request_types=STOW_BODY,
        response_types=ONE_TYPES,
        payload_statuses=frozenset({200, 202, 409}),  # PS3.18 §10.5.3: the response dataset
    )


def _level_resources(level: str, path: str) -> list[Resource]:
    """Retrieve, metadata, rendered, thumbnail, pixeldata, bulkdata and DELETE of one level."""
    lower = level.lower()
    resources = [
        Resource(
            path,
            (
                Operation(
                    "GET",
                    f"Retrieve{level}",
                    f"Retrieve the {lower}'s instances (or a zip of them)",
                    "PS3.18 §10.4",
                    lambda h: h.wado.retrieve,
                    RETRIEVE_STATUSES,
                    params=(ACCEPT, DICOMDIR),
                    response_types=retrieve_types,
                    notes=(
                        "Accept: application/zip (or ?accept=application/zip) downloads a zip of the files; "
                        "add ?dicomdir=true for a DICOM File-set. A transfer-syntax parameter transcodes; "
                        "transfer-syntax=* sends each instance as stored."
                    ),
                ),
                *((_stow("StoreStudyInstances", "Store instances into this study"),) if level == "Study" else ()),
                Operation(
                    "DELETE",
                    f"Delete{level}",
                    f"Delete the {lower} and everything in it",
                    "not PS3.18 (as dcm4chee and Microsoft's server)",
                    lambda h: h.wado.delete,
                    {204: "Deleted", **BAD, **NOT_FOUND},
                    condition=ALLOW_DELETE,
                ),
            ),
        ),
        Resource(
            path + "/metadata",
            (
                Operation(
                    "GET",
                    f"Retrieve{level}Metadata",
                    f"Retrieve the metadata of the {lower}'s instances",
                    "PS3.18 §10.4.1.1.2",
                    lambda h: h.wado.metadata,
                    {**RETRIEVE_STATUSES, 304: "Not modified since the ETag in If-None-Match"},
                    params=(ACCEPT,),
                    response_types=LIST_TYPES,
                ),
            ),
        ),
        Resource(
            path + "/rendered",
            (
                Operation(
                    "GET",
                    f"RetrieveRendered{level}",
                    f"The {lower} rendered as consumer images, video or text",
                    "PS3.18 §10.4.1.1.3",
                    lambda h: h.rendered.rendered,
                    {**RETRIEVE_STATUSES, 413: "The document is too large to render"},
                    params=RENDER_PARAMS,
                    response_types=rendered_types,
                ),
            ),
        ),
        Resource(
            path + "/thumbnail",
            (
                Operation(
                    "GET",
                    f"Retrieve{level}Thumbnail",
                    f"A small image representing the {lower}",
                    "PS3.18 §10.4.1.1.4",
                    lambda h: h.rendered.thumbnail,
                    RETRIEVE_STATUSES,
                    params=THUMBNAIL_PARAMS,
                    response_types=thumbnail_types,
                ),
            ),
        ),
        Resource(
            path + "/pixeldata",
            (
                Operation(
                    "GET",
                    f"Retrieve{level}PixelData",
                    f"The pixel data of the {lower}'s instances, one part per instance or compressed frame",
                    "PS3.18 §10.4.1.1.6 (CP-2040)",
                    lambda h: h.frames.pixeldata,
                    RETRIEVE_STATUSES,
                    params=(ACCEPT,),
                    response_types=bulk_types,
                ),
            ),
        ),
        Resource(
            path + "/bulkdata",
            (
                Operation(
                    "GET",
                    f"Retrieve{level}Bulkdata",
                    f"Every bulk data value of the {lower}'s instances",
                    "PS3.18 §10.4.1.1.5 (CP-2040)",
                    lambda h: h.bulk.scope,
                    RETRIEVE_STATUSES,
                    params=(ACCEPT,),
                    response_types=bulk_types,
                ),
            ),
        ),
    ]
    return resources


def _frame_resources() -> list[Resource]:
    return [
        Resource(
            _F,
            (
                Operation(
                    "GET",
                    "RetrieveFrames",
                    "Frames of an instance, in the order asked for",
                    "PS3.18 §10.4.1.1.6",
                    lambda h: h.frames.frames,
                    RETRIEVE_STATUSES,
                    params=(ACCEPT,),
                    response_types=frame_types,
                ),
            ),
        ),
        Resource(
            _F + "/rendered",
            (
                Operation(
                    "GET",
                    "RetrieveRenderedFrames",
                    "Frames rendered as consumer images or video",
                    "PS3.18 §10.4.1.1.3",
                    lambda h: h.rendered.rendered,
                    RETRIEVE_STATUSES,
                    params=RENDER_PARAMS,
                    response_types=rendered_types,
                ),
            ),
        ),
        Resource(
            _F + "/thumbnail",
            (
                Operation(
                    "GET",
                    "RetrieveFramesThumbnail",
                    "A small image of the frames",
                    "PS3.18 §10.4.1.1.4",
                    lambda h: h.rendered.thumbnail,
                    RETRIEVE_STATUSES,
                    params=THUMBNAIL_PARAMS,
                    response_types=thumbnail_types,
                ),
            ),
        ),
        Resource(
            _I + "/bulkdata/{path:path}",
            (
                Operation(
                    "GET",
                    "RetrieveBulkdata",
                    "One bulk data value (a BulkDataURI of the metadata); HTTP Range on application/octet-stream",
                    "PS3.18 §10.4.1.1.5",
                    lambda h: h.bulk.value,
                    {**RETRIEVE_STATUSES, 206: "The requested byte range", 416: "The range is beyond the value"},
                    params=(ACCEPT, Param("Range", "bytes=first-last (RFC 9110 §14.2)", style="header")),
                    response_types=bulk_types,
                ),
            ),
        ),
    ]


def _ups_resources() -> list[Resource]:
    subscriber = "/workitems/{workitem}/subscribers/{ae_title}"
    return [
        Resource(
            "/workitems",
            (
                Operation(
                    "POST",
                    "CreateWorkitem",
                    "Create a workitem (201 with its Location)",
                    "PS3.18 §11.4",
                    lambda h: h.ups.create,
                    {201: "Created", **UPS_BODY_STATUSES},
                    params=(Param("AffectedSOPInstanceUID", "UID of the new workitem (else the server picks one)"),),
                    request_types=DATASET_BODY,
                ),
                Operation(
                    "GET",
                    "SearchForWorkitems",
                    "Search for workitems",
                    "PS3.18 §11.9",
                    lambda h: h.ups.search,
                    SEARCH_STATUSES,
                    params=(*WORKITEM_KEYS, *QIDO_CONTROL),
                    response_types=LIST_TYPES,
                ),
            ),
        ),
        Resource(
            "/workitems/{workitem}",
            (
                Operation(
                    "GET",
                    "RetrieveWorkitem",
                    "Retrieve a workitem",
                    "PS3.18 §11.5",
                    lambda h: h.ups.retrieve,
                    {200: "The workitem", **BAD, **NOT_FOUND, **NOT_ACCEPTABLE},
                    params=(ACCEPT,),
                    response_types=ONE_TYPES,
                ),
                Operation(
                    "POST",
                    "UpdateWorkitem",
                    "Update the attributes of a workitem",
                    "PS3.18 §11.6",
                    lambda h: h.ups.update,
                    {200: "Updated", **UPS_BODY_STATUSES},
                    params=(TRANSACTION,),
                    request_types=DATASET_BODY,
                ),
            ),
        ),
        Resource(
            "/workitems/{workitem}/state",
            (
                Operation(
                    "PUT",
                    "ChangeWorkitemState",
                    "Claim, complete or cancel a workitem",
                    "PS3.18 §11.7",
                    lambda h: h.ups.change_state,
                    {200: "The state changed", **UPS_BODY_STATUSES},
                    params=(TRANSACTION,),
                    request_types=DATASET_BODY,
                ),
            ),
        ),
        Resource(
            "/workitems/{workitem}/cancelrequest",
            (
                Operation(
                    "POST",
                    "RequestWorkitemCancellation",
                    "Ask the performer to cancel a workitem",
                    "PS3.18 §11.8",
                    lambda h: h.ups.request_cancellation,
                    {202: "The request was accepted", **UPS_BODY_STATUSES},
                    request_types=DATASET_BODY,
                ),
            ),
        ),
        Resource(
            subscriber,
            (
                Operation(
                    "POST",
                    "CreateSubscription",
                    "Subscribe an AE to a workitem's, the Worklist's or a filtered Worklist's events",
                    "PS3.18 §11.10",
                    lambda h: h.events.subscribe,
                    {201: "Subscribed", **BAD, **NOT_FOUND, 409: "The workitem cannot be subscribed to"},
                    params=(
                        Param("deletionlock", "Keep completed workitems until this AE has seen them", "boolean"),
                        Param("filter", "Match keys of a Filtered Worklist subscription: Key=value,Key2=value2"),
                    ),
                ),
                Operation(
                    "DELETE",
                    "DeleteSubscription",
                    "Unsubscribe an AE",
                    "PS3.18 §11.11",
                    lambda h: h.events.unsubscribe,
                    {200: "Unsubscribed", **BAD, **NOT_FOUND},
                ),
            ),
        ),
        Resource(
            subscriber + "/suspend",
            (
                Operation(
                    "POST",
                    "SuspendSubscription",
                    "Stop subscribing the AE to new workitems of the Worklist",
                    "PS3.18 §11.12",
                    lambda h: h.events.suspend,
                    {200: "Suspended", **BAD, **NOT_FOUND},
                ),
            ),
        ),
    ]


# The instance change feed (web/changefeed.py): not PS3.18, as Microsoft's change feed. Its live
# streams (Server-Sent Events, WebSocket) are channels like the UPS one, routed in web/app.py.
HAS_CHANGEFEED = Condition("an index that keeps a change feed (memory, SQL)", lambda kit: kit.changefeed is not None)
CHANGEFEED_FILTERS = (
    Param("StudyInstanceUID", "Only changes of this study"),
    Param("SeriesInstanceUID", "Only changes of this series"),
    Param("Modality", "Only changes of instances of this modality"),
)


def _changefeed_resources() -> list[Resource]:
    def get(name: str, summary: str, handler: Callable[[Handlers], Handler], *params: Param, media: str) -> Operation:
        section = "not PS3.18 (as Microsoft's change feed)"
        statuses = {200: summary, **BAD, **NOT_FOUND}
        return Operation(
            "GET", name, summary, section, handler, statuses, params, response_types=(media,), condition=HAS_CHANGEFEED
        )

    return [
        Resource(
            "/changefeed",
            (
                get(
                    "ReadChangeFeed",
                    "Instance changes after a sequence number, oldest first",
                    lambda h: h.changefeed.entries,
                    Param("offset", "Return entries with a Sequence above this", "integer", minimum=0),
                    Param("limit", "The most entries to return (default 100)", "integer", minimum=1, maximum=1000),
                    *CHANGEFEED_FILTERS,
                    media="application/json",
                ),
            ),
        ),
        Resource(
            "/changefeed/latest",
            (get("ReadLatestChange", "The newest change", lambda h: h.changefeed.latest, media="application/json"),),
        ),
    ]


def _table() -> tuple[Resource, ...]:
    resources = [
        Resource(
            "/studies",
            (
                _qido("SearchForStudies", "Search for studies", Level.STUDY, STUDY_KEYS),
                _stow("StoreInstances", "Store instances"),
            ),
        ),
        Resource(
            "/series",
            (_qido("SearchForSeries", "Search for series", Level.SERIES, (*STUDY_KEYS, *SERIES_KEYS)),),
        ),
        Resource(
            "/instances",
            (
                _qido(
                    "SearchForInstances",
                    "Search for instances",
                    Level.INSTANCE,
                    (*STUDY_KEYS, *SERIES_KEYS, *INSTANCE_KEYS),
                ),
            ),
        ),
        Resource(
            _S + "/series",
            (
                _qido(
                    "SearchForStudySeries", "Search for the series of a study", Level.SERIES, SERIES_KEYS, scoped=True
                ),
            ),
        ),
        Resource(
            _S + "/instances",
            (
                _qido(
                    "SearchForStudyInstances",
                    "Search for the instances of a study",
                    Level.INSTANCE,
                    (*SERIES_KEYS, *INSTANCE_KEYS),
                    scoped=True,
                ),
            ),
        ),
        Resource(
            _R + "/instances",
            (
                _qido(
                    "SearchForSeriesInstances",
                    "Search for the instances of a series",
                    Level.INSTANCE,
                    INSTANCE_KEYS,
                    scoped=True,
                ),
            ),
        ),
    ]
    for level, path in _LEVELS:
        resources += _level_resources(level, path)
    resources += _frame_resources()
    resources += _ups_resources()
    resources += _changefeed_resources()
    return tuple(resources)


RESOURCES: tuple[Resource, ...] = _table()
"""Every resource the kit can serve, in route order; :func:`served` filters them for one kit."""

#: The UPS notification channel, a WebSocket (PS3.18 §8.10.4): not an HTTP resource, so neither in
#: the WADL nor in OpenAPI (which has no WebSocket operations).
CHANNEL_PATH = "/subscribers/{ae_title}"
