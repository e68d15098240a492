"""The one error hierarchy of dicomweb-kit, and the HTTP status each error maps to.

Every error the core or an adapter raises on purpose is a :class:`DicomWebError`. Each class
carries its PS3.18 HTTP status as ``http_status``; ``web/error_handlers.py`` is the only place
that turns them into responses, and anything else becomes a generic 500 without details.

    DicomWebError
    ├── InvalidRequest (400, ValueError)
    │   ├── InvalidQuery        bad QIDO key or value
    │   ├── InvalidUid          not a UID per PS3.5 §9.1
    │   └── MalformedMultipart  not a well-formed multipart/related body
    ├── Forbidden (403, PermissionError)   the authorization hook refused (dicomweb_kit.authorization)
    ├── ResourceNotFound (404, LookupError)
    ├── MethodNotAllowed (405)
    ├── NotAcceptable (406)
    ├── RequestTimeout (408)            a request body that stalls
    ├── Conflict (409)
    ├── WorkitemRefused              a UPS-RS request refused with a PS3.4 DIMSE status
    │   ├── WorkitemConflict (409, Conflict)
    │   ├── WorkitemInvalid (400, InvalidRequest)
    │   └── WorkitemNotFound (404, ResourceNotFound)
    ├── PayloadTooLarge (413)
    ├── UnsupportedMediaType (415)
    ├── StorageUnavailable (503)       adapters wrap their driver errors in it
    └── ConfigurationError (500, TypeError)   raised at construction, never per request

Per-instance STOW failures are not exceptions that escape a request: they are
:class:`InstanceRejected` values collected into the Store Instances Response (PS3.18 §10.5.3).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ConfigurationError",
    "Conflict",
    "DicomWebError",
    "Forbidden",
    "InstanceRejected",
    "InvalidQuery",
    "InvalidRequest",
    "InvalidUid",
    "MalformedMultipart",
    "MethodNotAllowed",
    "NotAcceptable",
    "PayloadTooLarge",
    "RequestTimeout",
    "ResourceNotFound",
    "StorageUnavailable",
    "UnsupportedMediaType",
    "WorkitemConflict",
    "WorkitemInvalid",
    "WorkitemNotFound",
    "WorkitemRefused",
]


class DicomWebError(Exception):
    """Base of every error dicomweb-kit raises on purpose; ``str(err)`` is safe to show a client."""

    http_status: ClassVar[int] = 500

    def __init__(self, message: str, /) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(DicomWebError, ValueError):
    """The request is malformed (PS3.18 §8.5: 400 Bad Request)."""

    http_status = 400


class InvalidQuery(InvalidRequest):
    """A QIDO-RS query parameter names an unknown attribute or carries an unparsable value."""


class InvalidUid(InvalidRequest):
    """A UID in the path or query is not a valid UID (PS3.5 §9.1)."""


class MalformedMultipart(InvalidRequest):
    """The body is not a well-formed multipart/related message (RFC 2046 §5.1, RFC 2387)."""


class Forbidden(DicomWebError, PermissionError):
    """The host's authorization hook refused the request (403, RFC 9110 §15.5.4)."""

    http_status = 403


class ResourceNotFound(DicomWebError, LookupError):
    """The target study, series, instance, frame or workitem does not exist (404)."""

    http_status = 404


class MethodNotAllowed(DicomWebError):
    """The resource exists but does not support this method (405)."""

    http_status = 405


class NotAcceptable(DicomWebError):
    """No representation matches the Accept header (406); the message names what we can produce."""

    http_status = 406


class RequestTimeout(DicomWebError):
    """The client stopped sending the request body (408)."""

    http_status = 408


class Conflict(DicomWebError):
    """The request is well formed but conflicts with the state of the target (409)."""

    http_status = 409


class WorkitemRefused(DicomWebError):
    """A UPS-RS request refused per PS3.4 Annex CC (see :mod:`dicomweb_kit.ups.states`).

    Args:
        message: what was refused and why, naming the workitem and attributes.
        status: the DIMSE status of the refusal (e.g. ``0xC301``).
        warning: the Warning text PS3.18 §11 prescribes for it (without the ``299 <service>:``).
    """

    def __init__(self, message: str, /, *, status: int, warning: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.warning = warning


class WorkitemConflict(WorkitemRefused, Conflict):
    """A UPS-RS request inconsistent with the workitem's state (409)."""


class WorkitemInvalid(WorkitemRefused, InvalidRequest):
    """A UPS-RS request PS3.18 answers with 400 (a missing or incorrect Transaction UID, ...)."""


class WorkitemNotFound(WorkitemRefused, ResourceNotFound):
    """The target workitem does not exist (404; PS3.4 status C307)."""


class PayloadTooLarge(DicomWebError):
    """The request breaks a configured size or count limit (413)."""

    http_status = 413


class UnsupportedMediaType(DicomWebError):
    """The request body has a media type this resource does not accept (415)."""

    http_status = 415


class StorageUnavailable(DicomWebError):
    """A storage backend failed; adapters raise it instead of leaking driver errors (503)."""

    http_status = 503


class ConfigurationError(DicomWebError, TypeError):
    """The kit was built with adapters or settings that cannot work; raised at construction."""


class InstanceRejected(DicomWebError):
    """One STOW-RS instance was not stored; collected into FailedSOPSequence (0008,1198).

    Args:
        message: what went wrong, for logs and for the response's Warning header.
        failure_reason: the Failure Reason (0008,1197) code, one of :mod:`dicomweb_kit.status_codes`.
        sop_class_uid: Referenced SOP Class UID, when the header was readable.
        sop_instance_uid: Referenced SOP Instance UID, when the header was readable.
    """

    http_status = 409

    def __init__(
        self,
        message: str,
        /,
        *,
        failure_reason: int,
        sop_class_uid: str | None = None,
        sop_instance_uid: str | None = None,
    ) -> None:
        super().__init__(message)
        self.failure_reason = failure_reason
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid
