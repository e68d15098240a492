"""Subscribe, Unsubscribe and Suspend Global Subscription (PS3.18 §11.10-11.12, PS3.4 §CC.2.3):
framework-free operations on a kit, used by the HTTP handlers and callable from Python.

Choices where the standard leaves room:

* Subscribing to a workitem in a final state (COMPLETED, CANCELED) is allowed: it can still be
  retrieved, and a Deletion Lock keeps it (PS3.4 §CC.2.1.3); it gets its initial State Report.
* A worklist subscription sends initial State Reports for the workitems that are not final
  (SCHEDULED, IN PROGRESS) and subscribes the AE to those: final workitems send no more events.
* Unsubscribing from something the AE is not subscribed to succeeds (the state asked for holds);
  only an unknown workitem without any subscription is 404.
* Deletion Locks are always granted, so the "Deletion Lock not granted" warning never occurs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from ..errors import InvalidRequest, ResourceNotFound
from ..query.matching import instance_matches
from ..resources import validate_uid
from .events import encode_report, filter_terms, state_report, subscriber_topic
from .subscriptions import FILTERED_WORKLIST_UID, WORKLIST_UID, Subscription
from .workitem_lookup import workitem_lookup

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = [
    "WorkitemLookup",
    "parse_ae_title",
    "parse_deletion_lock",
    "parse_filter",
    "subscribe",
    "suspend",
    "unsubscribe",
]

MAX_AE_LENGTH: Final = 16
_STATE: Final = "00741000"  # Procedure Step State


class WorkitemLookup(Protocol):
    """What subscribing needs to know of the workitems (their store is another module's)."""

    async def get(self, workitem_uid: str, /) -> Mapping[str, Any] | None:
        """The workitem's attributes (DICOM JSON, without the Transaction UID), or ``None``."""
        ...

    def active(self) -> AsyncIterator[tuple[str, Mapping[str, Any]]]:
        """``(uid, attributes)`` of every workitem that is not in a final state."""
        ...


def parse_ae_title(raw: str, /) -> str:
    """The AE title of a path: VR AE (PS3.5 Table 6.2-1), at most 16 characters of the default
    repertoire without backslash or control characters; leading and trailing spaces are not
    significant and are removed."""
    title = raw.strip(" ")
    if not title or len(title) > MAX_AE_LENGTH:
        raise InvalidRequest(f"AE title {raw!r} must be 1 to {MAX_AE_LENGTH} characters (VR AE, PS3.5 §6.2)")
    if any(not (0x20 <= ord(c) < 0x7F) or c == "\\" for c in title):
        raise InvalidRequest(
            f"AE title {raw!r} may hold only printable ASCII characters other than backslash (VR AE, PS3.5 §6.2)"
        )
    return title


def parse_deletion_lock(value: str | None, /) -> bool:
    """``deletionlock=true|false`` (PS3.18 §11.10.1.2); absent means false."""
    if value is None:
        return False
    text = value.strip().lower()
    if text not in ("true", "false"):
        raise InvalidRequest(f"Query parameter 'deletionlock' must be true or false, not {value!r}")
    return text == "true"


_RESERVED: Final = frozenset({"deletionlock", "filter", "accept", "charset"})


def parse_filter(params: Sequence[tuple[str, str]], /) -> tuple[tuple[str, str], ...]:
    """The match keys of a filtered worklist subscription, validated, in either form PS3.18 has
    used: ``filter=Key=value,Key2=value2`` (§11.10.1.2, current) or ``Key=value&Key2=value2``
    (the 2019 CreateSubscription ``{?query*}``). In the ``filter`` form a comma separates match
    keys only where a ``Key=`` follows, so a comma-separated UID list stays one value."""
    pairs: list[tuple[str, str]] = []
    for name, value in params:
        if name.lower() == "filter":
            for piece in value.split(","):
                key, sep, text = piece.partition("=")
                if sep and key.strip() and all(c.isalnum() or c in "._" for c in key.strip()):
                    pairs.append((key.strip(), text))
                elif pairs:
                    pairs[-1] = (pairs[-1][0], pairs[-1][1] + "," + piece)
                else:
                    raise InvalidRequest(f"Query parameter 'filter': {piece!r} is not attribute=value")
        elif name.lower() not in _RESERVED:
            pairs.append((name, value))
    result = tuple(pairs)
    filter_terms(result)  # raises InvalidQuery (400) naming a bad key or value
    return result


def _validate_target(target: str) -> str:
    return validate_uid(target, name="workitem UID")


async def subscribe(
    kit: DicomWeb,
    target: str,
    ae_title: str,
    /,
    *,
    workitems: WorkitemLookup | None = None,
    deletion_lock: bool = False,
    filter: Sequence[tuple[str, str]] = (),
) -> None:
    """Subscribe ``ae_title`` to a workitem, the worklist or the filtered worklist (``target``),
    and queue the initial UPS State Reports (PS3.4 Table CC.2.3-2). ``workitems`` defaults to
    the kit's workitem store.

    Raises:
        InvalidRequest: a bad UID, AE title or filter; a filter on another target.
        ResourceNotFound: ``target`` is neither a workitem nor a worklist UID.
    """
    _validate_target(target)
    ae_title = parse_ae_title(ae_title)
    workitems = workitems if workitems is not None else workitem_lookup(kit)
    keys = tuple(filter)
    if target == FILTERED_WORKLIST_UID:
        if not keys:
            raise InvalidRequest("A Filtered Worklist subscription needs a filter (PS3.18 Table 11.10.1-2)")
        filter_terms(keys)  # 400 for a bad key or value, before anything is stored
    elif keys:
        raise InvalidRequest("Match keys are for the Filtered Worklist subscription (1.2.840.10008.5.1.4.34.5.1) only")
    keep = kit.settings.ups_event_log_limit
    if target in (WORKLIST_UID, FILTERED_WORKLIST_UID):
        subscription = Subscription(ae_title=ae_title, target=target, deletion_lock=deletion_lock, filter=keys)
        # The worklist subscription is stored first, so a workitem created meanwhile is not missed
        # (at worst it gets two State Reports).
        await kit.subscriptions.subscribe(subscription)
        uids: list[str] = []
        reports: list[bytes] = []
        async for uid, attributes in workitems.active():
            if target != FILTERED_WORKLIST_UID or instance_matches(filter_terms(keys), attributes):
                uids.append(uid)
                reports.append(encode_report(state_report(uid, attributes)))
        await kit.subscriptions.subscribe(subscription, workitems=uids)
        await kit.subscriptions.append(ae_title, reports, keep=keep)
    else:
        await _subscribe_workitem(kit, target, ae_title, deletion_lock, workitems)
    await kit.events.publish(subscriber_topic(ae_title), b"")


async def _subscribe_workitem(
    kit: DicomWeb, target: str, ae_title: str, deletion_lock: bool, workitems: WorkitemLookup
) -> None:
    keep = kit.settings.ups_event_log_limit
    if await workitems.get(target) is None:
        raise ResourceNotFound(f"Workitem {target} does not exist")
    # Subscribed first, read second: a change committed in between is either seen by the read
    # or reported to the new subscription, never neither.
    await kit.subscriptions.subscribe(Subscription(ae_title=ae_title, target=target, deletion_lock=deletion_lock))
    found = await workitems.get(target)
    if found is None:  # deleted meanwhile
        await kit.subscriptions.unsubscribe(ae_title, target)
        raise ResourceNotFound(f"Workitem {target} does not exist")
    await kit.subscriptions.append(ae_title, [encode_report(state_report(target, found))], keep=keep)
    # A change between the read and the append was reported before this initial report: read
    # again and report the newer state last, so that the subscriber ends on the truth.
    latest = await workitems.get(target)
    if latest is not None and latest.get(_STATE) != found.get(_STATE):
        await kit.subscriptions.append(ae_title, [encode_report(state_report(target, latest))], keep=keep)


async def unsubscribe(
    kit: DicomWeb, target: str, ae_title: str, /, *, workitems: WorkitemLookup | None = None
) -> None:
    """Unsubscribe ``ae_title`` (PS3.4 Table CC.2.3-2; PS3.18 §11.11): from one workitem, from
    everything (the worklist UID), or from the filtered worklist and what it subscribed to.

    Raises:
        ResourceNotFound: an unknown workitem to which the AE was not subscribed.
    """
    _validate_target(target)
    ae_title = parse_ae_title(ae_title)
    workitems = workitems if workitems is not None else workitem_lookup(kit)
    removed = await kit.subscriptions.unsubscribe(ae_title, target)
    if not removed and target not in (WORKLIST_UID, FILTERED_WORKLIST_UID) and await workitems.get(target) is None:
        raise ResourceNotFound(f"Workitem {target} does not exist")


async def suspend(kit: DicomWeb, target: str, ae_title: str, /) -> None:
    """Suspend Global Subscription (PS3.18 §11.12, PS3.4 §CC.2.3 Action Type 5): no new
    workitems for ``ae_title``; its existing workitem subscriptions stay.

    Raises:
        InvalidRequest: ``target`` is not a worklist UID (PS3.4 status C314, "Specified action
            not appropriate for specified instance").
    """
    _validate_target(target)
    ae_title = parse_ae_title(ae_title)
    if target not in (WORKLIST_UID, FILTERED_WORKLIST_UID):
        raise InvalidRequest(
            f"Suspend applies to the Worklist ({WORKLIST_UID}) or Filtered Worklist ({FILTERED_WORKLIST_UID}) "
            "subscription, not to a workitem"
        )
    await kit.subscriptions.suspend(ae_title, target)

