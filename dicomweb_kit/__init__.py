"""dicomweb-kit: an embeddable, streaming DICOMweb (PS3.18) toolkit.

The public API is this flat namespace; adapters (ours and third parties') import only from it.
"""

from __future__ import annotations

from .api import DicomWebApi, Frames, RenderedImage, RetrievedInstance, SearchResult, StoredInstance, StoreOutcome
from .authorization import Access, Allow, Deny, Narrow
from .changefeed import ChangeEntry, ChangeFeed, ChangeFilter, MemoryChangeFeed
from .errors import (
    ConfigurationError,
    Conflict,
    DicomWebError,
    Forbidden,
    InstanceRejected,
    InvalidQuery,
    InvalidRequest,
    InvalidUid,
    MalformedMultipart,
    MethodNotAllowed,
    NotAcceptable,
    PayloadTooLarge,
    RequestTimeout,
    ResourceNotFound,
    StorageUnavailable,
    UnsupportedMediaType,
    WorkitemConflict,
    WorkitemInvalid,
    WorkitemNotFound,
    WorkitemRefused,
)
from .events import EventBus, MemoryEventBus
from .hooks import AfterStore, BeforeStore, Coerce, IncomingInstance, Reject
from .index import AddOutcome, IndexCapabilities, InstanceIndex, InstanceRecord, MatchRow, Page, ScopeSummary
from .kit import DicomWeb
from .pixels.layout import PixelLayout
from .query.matching import DATE_TIME_VRS, NUMERIC_VRS, as_number, fold, instance_matches, pn_groups, pn_strip
from .query.ordering import sort_entities, sort_key, sort_value
from .query.qido_params import normalise_datetime, resolve_attribute
from .query.terms import (
    Matcher,
    OrderKey,
    Query,
    RangeMatch,
    SequenceMatch,
    SingleValue,
    Term,
    UidList,
    Universal,
    Wildcard,
)
from .render_cache import MemoryRenderCache, RenderCache
from .resources import Level, ResourceKey, validate_uid
from .settings import Settings
from .storage import BlobInfo, BlobStore
from .tenancy import TenantScoped, current_tenant, tenant_identifier, validate_tenant
from .threads import WorkerThreads
from .ups.memory import MemoryWorkitemStore
from .ups.store import Workitem, WorkitemPage, WorkitemStore, search_workitems
from .ups.subscriptions import (
    FILTERED_WORKLIST_UID,
    WORKLIST_UID,
    LoggedEvent,
    MemorySubscriptionStore,
    Subscription,
    SubscriptionStore,
)

__version__ = "0.1.0"

__all__ = [
    "TenantScoped",
    "current_tenant",
    "tenant_identifier",
    "validate_tenant",
    "DATE_TIME_VRS",
    "NUMERIC_VRS",
    "AddOutcome",
    "AfterStore",
    "BeforeStore",
    "BlobInfo",
    "BlobStore",
    "ConfigurationError",
    "Conflict",
    "DicomWeb",
    "DicomWebApi",
    "Frames",
    "RenderedImage",
    "RetrievedInstance",
    "SearchResult",
    "StoreOutcome",
    "StoredInstance",
    "DicomWebError",
    "Forbidden",
    "Access",
    "Allow",
    "Deny",
    "Narrow",
    "IndexCapabilities",
    "InstanceIndex",
    "InstanceRecord",
    "InstanceRejected",
    "InvalidQuery",
    "InvalidRequest",
    "InvalidUid",
    "ChangeEntry",
    "ChangeFeed",
    "ChangeFilter",
    "Coerce",
    "IncomingInstance",
    "Level",
    "MemoryChangeFeed",
    "Reject",
    "MalformedMultipart",
    "MatchRow",
    "Matcher",
    "MemoryRenderCache",
    "MemoryWorkitemStore",
    "MethodNotAllowed",
    "NotAcceptable",
    "OrderKey",
    "Page",
    "PayloadTooLarge",
    "PixelLayout",
    "Query",
    "RangeMatch",
    "RenderCache",
    "RequestTimeout",
    "ResourceKey",
    "ResourceNotFound",
    "ScopeSummary",
    "SequenceMatch",
    "Settings",
    "SingleValue",
    "StorageUnavailable",
    "Term",
    "UidList",
    "Universal",
    "UnsupportedMediaType",
    "Wildcard",
    "WorkerThreads",
    "Workitem",
    "WorkitemConflict",
    "WorkitemInvalid",
    "WorkitemNotFound",
    "WorkitemPage",
    "WorkitemRefused",
    "WorkitemStore",
    "EventBus",
    "MemoryEventBus",
    "FILTERED_WORKLIST_UID",
    "WORKLIST_UID",
    "LoggedEvent",
    "MemorySubscriptionStore",
    "Subscription",
    "SubscriptionStore",
    "__version__",
    "as_number",
    "fold",
    "instance_matches",
    "normalise_datetime",
    "pn_groups",
    "pn_strip",
    "resolve_attribute",
    "search_workitems",
    "sort_entities",
    "sort_key",
    "sort_value",
    "validate_uid",
]
