"""Authorization: one async hook the host supplies, asked before every operation of the web layer.

``DicomWeb(authorize=..., identify=..., hide_denied=...)``:

* ``identify(request)`` (sync or async) turns the Starlette request into the host's identity:
  ``request.user``, a header, a JWT claim. Default: :func:`anonymous` (``request.user`` when the
  host runs Starlette's ``AuthenticationMiddleware``, else ``None``).
* ``authorize(identity, access)`` is given that identity and an :class:`Access`: the operation's
  kind (``"search"``, ``"metadata"``, ``"store"``...), the route table's operation name and the
  resource (the path's UIDs, the parsed QIDO :class:`~dicomweb_kit.query.terms.Query`, the
  workitem). It returns a :data:`Decision`:

  - :class:`Allow`: go on.
  - :class:`Deny`: 403 Forbidden; with ``hide_denied=True`` a resource named by UIDs is answered
    404 exactly as one that is not stored, so existence never leaks.
  - :class:`Narrow`: match terms that restrict what the identity may see (``Narrow.where(
    InstitutionName="X")``, ``Narrow.where(PatientID=["A", "B"])``).

How a narrowing is honoured. **The study is the unit of access**: a study is visible when it
matches the terms as a study-level QIDO search would (one of its instances matches every term,
PS3.4 §C.2.2.2 as :func:`~dicomweb_kit.query.matching.instance_matches` defines it), and then
everything in it is visible; nothing of any other study is. Imaging access rules are about
patients, orders and institutions, all study facts; a viewer given half a study would show a
wrong one; and QIDO's NumberOfStudyRelated* counts are study facts the index computes over the
whole study. So:

* QIDO-RS: the terms are added to the query before the index runs it, so matching, counts,
  ``limit``/``offset`` paging and the truncation Warning are all computed after narrowing. A
  study- or series-scoped search (``/studies/{s}/series``) first checks the study as below.
* Everything else that names a study (metadata, retrieve and zip, frames, rendered, thumbnail,
  pixel data, bulk data, DELETE): a study outside the narrowed set is answered as denied,
  before the handler runs.
* Operations that name no study and cannot be narrowed (STOW-RS, the change feed, UPS-RS
  workitems and their event channels) treat a :class:`Narrow` as :class:`Deny`: fail closed.
  Return :class:`Allow` or :class:`Deny` for them (per-instance rules on what is stored belong
  in the before-store hook, :mod:`dicomweb_kit.hooks`).

Narrowing terms are ordinary match keys, so an index evaluates them in its own query (SQL, no
Python predicate that would break paging). Prefer attributes constant within a study
(PatientID, IssuerOfPatientID, AccessionNumber, InstitutionName in practice, a StudyInstanceUID
list): for series and instance searches the terms are matched per series or instance, so a
study whose series differ in them shows only the matching ones there. PN terms follow the
request's ``fuzzymatching``.

Errors: a :class:`~dicomweb_kit.errors.DicomWebError` the hook (or ``identify``) raises is the
response (e.g. ``StorageUnavailable`` → 503 when the host's policy service is down); anything
else, or a return value that is not a decision, is a 500 "authorization failed" with no detail
(and a log entry): fail closed. The kit sets no timeout of its own: a slow hook delays only its
own request; wrap it in ``anyio.fail_after`` and raise ``StorageUnavailable`` to bound it.

Scope: the hook guards the HTTP resources of the route table (``web/route_table.py``) and the
WebSocket/Server-Sent Events channels. Python code that calls the kit's services or adapters
directly is the host's own code: no identity is involved and nothing is checked.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from .errors import DicomWebError, Forbidden, InvalidQuery, InvalidUid, ResourceNotFound
from .query.qido_params import parse_qido, resolve_attribute
from .query.terms import Query, SingleValue, Term, UidList
from .resources import Level, ResourceKey, validate_uid

if TYPE_CHECKING:
    from .kit import DicomWeb

__all__ = [
    "ALLOW",
    "DENY",
    "STUDY_KINDS",
    "Access",
    "AccessKind",
    "Allow",
    "Authorize",
    "AuthorizationFailed",
    "Authorizer",
    "Decision",
    "Deny",
    "Identify",
    "Narrow",
    "anonymous",
    "study_visible",
]

log = logging.getLogger("dicomweb_kit.authorization")

AccessKind = Literal[
    "search",
    "retrieve",  # instances, or application/zip
    "metadata",
    "rendered",
    "thumbnail",
    "frames",
    "pixeldata",
    "bulkdata",
    "store",
    "delete",
    "workitem-create",
    "workitem-search",
    "workitem-retrieve",
    "workitem-update",
    "workitem-state",
    "workitem-cancel",
    "workitem-subscribe",
    "workitem-unsubscribe",
    "workitem-suspend",
    "workitem-events",  # the UPS notification WebSocket
    "changefeed",  # pages, latest, Server-Sent Events and WebSocket
]

#: Kinds whose resource is a study or lies in one: a :class:`Narrow` is the study's visibility.
STUDY_KINDS: Final = frozenset(
    {"search", "retrieve", "metadata", "rendered", "thumbnail", "frames", "pixeldata", "bulkdata", "delete"}
)


class Access(msgspec.Struct, frozen=True):
    """The operation a request asks for, as the hook sees it.

    Attributes:
        kind: what is done (see :data:`AccessKind`).
        operation: the route table's operation name, PS3.18's transaction name where it has one
            (``"RetrieveStudyMetadata"``, ``"SearchForSeries"``, ``"ReadChangeFeed"``).
        method: the HTTP method (``"GET"``; ``"WEBSOCKET"`` for a WebSocket channel).
        key: the path's study, series and instance UIDs (empty when the path names none).
        query: for ``search``: the parsed QIDO-RS query (its level, scope, terms, paging).
        workitem: for workitem kinds: the workitem UID of the path, if any.
    """

    kind: AccessKind
    operation: str
    method: str
    key: ResourceKey = ResourceKey()
    query: Query | None = None
    workitem: str | None = None

    @property
    def level(self) -> Level | None:
        """The level of the rows of a search, else the deepest level the path names."""
        return self.query.level if self.query is not None else self.key.level


class Allow(msgspec.Struct, frozen=True):
    """Go on."""


class Deny(msgspec.Struct, frozen=True):
    """Refuse: 403 (``message`` is the response text), or 404 with ``hide_denied``."""

    message: str = ""


class Narrow(msgspec.Struct, frozen=True):
    """Allow, restricted to the studies that match every one of ``terms`` (module docstring)."""

    terms: tuple[Term, ...]

    @classmethod
    def where(cls, **keys: str | Sequence[str]) -> Narrow:
        """Terms from keywords, with QIDO-RS value syntax: ``where(InstitutionName="Fairview*")``;
        a list means any of its values: ``where(PatientID=["A", "B"])``.

        Raises:
            InvalidQuery: an unknown keyword or a value QIDO-RS would refuse (a host bug).
        """
        terms: list[Term] = []
        for name, value in keys.items():
            if isinstance(value, str):
                terms += parse_qido([(name, value)], Level.INSTANCE, ResourceKey()).terms
                continue
            tag, vr = resolve_attribute(name)
            values = tuple(dict.fromkeys(v.strip(" ") for v in value))
            if vr == "UI":
                try:
                    for uid in values:
                        validate_uid(uid, name=name)
                except InvalidUid as err:
                    raise InvalidQuery(err.message) from None
            # Any of several values: List of UID Matching's membership rule (PS3.4 §C.2.2.2.2),
            # which the core matcher applies to any VR. An empty list matches nothing.
            terms.append(Term(tag, vr, UidList(values)))
        return cls(tuple(terms))


Decision = Allow | Deny | Narrow
ALLOW: Final = Allow()
DENY: Final = Deny()

#: ``async def authorize(identity, access, /) -> Decision``.
Authorize = Callable[[Any, Access], Awaitable[Decision]]
#: ``identify(request) -> identity``, sync or async; ``request`` is the Starlette request (or WebSocket).
Identify = Callable[[Any], Any]


def anonymous(request: Any, /) -> Any:
    """The default identity: ``request.user`` when Starlette's ``AuthenticationMiddleware`` set
    one, else ``None`` (anonymous)."""
    scope = getattr(request, "scope", {})
    return scope.get("user")


class AuthorizationFailed(DicomWebError):
    """The hook or the identity resolver failed (500); the cause is logged, never shown."""

    http_status = 500


class Authorizer:
    """A kit's authorization policy: the host's hook, identity resolver and denial mode."""

    def __init__(self, authorize: Authorize, /, *, identify: Identify | None = None, hide_denied: bool = False) -> None:
        self.authorize = authorize
        self.identify: Identify = identify if identify is not None else anonymous
        self.hide_denied = hide_denied

    async def decide(self, request: Any, access: Access, /) -> Decision:
        """Ask the hook about ``access`` for the identity of ``request``."""
        try:
            identity = self.identify(request)
            if inspect.isawaitable(identity):
                identity = await identity
            decision: object = await self.authorize(identity, access)  # a host's hook may return anything
        except DicomWebError:
            raise
        except Exception:
            log.exception("the authorization hook failed on %s %s", access.operation, access.key)
            raise AuthorizationFailed("authorization failed") from None
        if not isinstance(decision, Allow | Deny | Narrow):
            log.error("the authorization hook returned %r, not a decision, for %s", decision, access.operation)
            raise AuthorizationFailed("authorization failed")
        return decision

    def denied(self, access: Access, message: str = "", /) -> DicomWebError:
        """The error that answers a denied ``access``: 404 as if absent when hiding and the path
        names a resource (the message of :func:`~dicomweb_kit.services.wado.require_summary`),
        else 403."""
        if self.hide_denied and access.key.study is not None:
            return ResourceNotFound(f"no {access.key.level} {access.key} is stored here")
        if self.hide_denied and access.workitem is not None:
            return ResourceNotFound(f"no workitem {access.workitem} is stored here")
        return Forbidden(message or f"{access.operation} is not allowed")


async def study_visible(kit: DicomWeb, study: str, terms: Sequence[Term], /) -> bool:
    """Does the stored study ``study`` match ``terms`` (one of its instances matches all)?

    Asked of the index as ``/studies?StudyInstanceUID={study}&...`` so SQL indexes answer it in
    their own query; the index contract makes that the core matcher's answer.
    """
    uid = Term(0x0020000D, "UI", SingleValue(study))
    page = await kit.index.search(Query(level=Level.STUDY, terms=(uid, *terms), limit=1))
    return bool(page.rows)
