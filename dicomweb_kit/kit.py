"""DicomWeb: one DICOMweb service built from a blob store, an instance index and settings."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import msgspec

from .api import DicomWebApi
from .authorization import Authorize, Authorizer, Identify
from .changefeed import ChangeEntry, ChangeFeed, ChangeFilter, follow
from .errors import ConfigurationError
from .events import EventBus, MemoryEventBus
from .hooks import AfterStore, AfterStoreRunner, BeforeStore, IncomingInstance
from .index import InstanceIndex
from .render_cache import MemoryRenderCache, RenderCache
from .settings import Settings
from .storage import BlobStore
from .tenancy import (
    PrefixedBlobStore,
    TenantEventBus,
    TenantRenderCache,
    TenantScoped,
    acting_for,
    validate_tenant,
)
from .ups.memory import MemoryWorkitemStore
from .ups.store import WorkitemStore
from .ups.subscriptions import MemorySubscriptionStore, SubscriptionStore

if TYPE_CHECKING:
    from .hooks import Coerce, Reject
    from .web.tenants import TenantResolver
    from .web.types import ASGIApp

__all__ = ["DicomWeb"]


class DicomWeb(DicomWebApi):
    """A DICOMweb service (STOW-RS, QIDO-RS, WADO-RS) over the adapters you give it.

    Mount :attr:`app` anywhere in a Starlette or FastAPI app and run :attr:`lifespan` from the
    host app (a mounted app's own lifespan is never run), or use ``async with kit:``::

        kit = DicomWeb(blobs=MemoryBlobStore(), index=MemoryIndex())
        app = Starlette(routes=[Mount("/dicom-web", app=kit.app)], lifespan=kit.lifespan)

    Every URL the service returns (RetrieveURL, BulkDataURI) is built from the request's own
    base URL, mount prefix included, so it can be followed as is.

    The same operations are async methods of the kit for the host's own code
    (:class:`~dicomweb_kit.api.DicomWebApi`: ``await kit.store(ds)``, ``kit.search_studies(...)``).

    Args:
        blobs: where instance bytes are kept.
        index: the records of stored instances, and query matching over them.
        settings: limits and policies.
        render_cache: where rendered thumbnails are cached (default: in memory, bounded by
            ``settings.thumbnail_cache_bytes``).
        workitems: where UPS-RS workitems are kept (default: the index's own
            ``ups_workitems()`` store if it has one, as ``SqlIndex`` does on its database, else
            in memory: workitems are then lost when the process stops).
        events: the event bus that wakes UPS-RS notification channels (default: in memory, one
            process; several workers need a shared bus such as the SQL adapter's
            ``PostgresEventBus``).
        subscriptions: where UPS subscriptions and event logs are kept (default: the index's own
            ``ups_subscriptions()`` store if it has one, else in memory).
        before_store: an async hook that accepts, rejects or coerces each instance before it is
            committed (:mod:`dicomweb_kit.hooks`).
        after_store: an async hook given the records of each commit, run in the background of
            the lifespan (never delays a response; errors are logged).
        after_store_concurrency: after-store calls running at once.
        changefeed: the instance change feed (default: the index's own ``change_feed()`` if it
            has one, written in the index's transactions; ``None`` otherwise, and the change
            feed resources answer 404).
        authorize: an async hook asked before every HTTP operation, given the identity and the
            :class:`~dicomweb_kit.authorization.Access`; it allows, denies (403) or narrows
            (:mod:`dicomweb_kit.authorization`). ``None``: everything is allowed.
        identify: turns the Starlette request into the identity the hook is given (sync or
            async; default ``request.user`` if set, else ``None``).
        hide_denied: answer a denied resource 404, as if it were not stored, instead of 403.
        tenants: how an HTTP request names its tenant (:mod:`dicomweb_kit.web.tenants`: a path
            segment, a header, or the host's own claim); each tenant is an archive of its own
            (:meth:`tenant`). ``None``: one archive, no tenants over HTTP.

    Raises:
        ConfigurationError: an adapter does not implement its protocol.
    """

    def __init__(
        self,
        *,
        blobs: BlobStore,
        index: InstanceIndex,
        settings: Settings | None = None,
        render_cache: RenderCache | None = None,
        workitems: WorkitemStore | None = None,
        events: EventBus | None = None,
        subscriptions: SubscriptionStore | None = None,
        before_store: BeforeStore | None = None,
        after_store: AfterStore | None = None,
        after_store_concurrency: int = 4,
        changefeed: ChangeFeed | None = None,
        authorize: Authorize | None = None,
        identify: Identify | None = None,
        hide_denied: bool = False,
        tenants: TenantResolver | None = None,
    ) -> None:
        if not isinstance(blobs, BlobStore):
            raise ConfigurationError(f"blobs must implement dicomweb_kit.BlobStore; {type(blobs).__name__} does not")
        if not isinstance(index, InstanceIndex):
            raise ConfigurationError(
                f"index must implement dicomweb_kit.InstanceIndex; {type(index).__name__} does not"
            )
        self.blobs = blobs
        self.index = index
        self.settings = settings or Settings()
        self.render_cache = (
            render_cache if render_cache is not None else MemoryRenderCache(self.settings.thumbnail_cache_bytes)
        )
        self.events: EventBus = events if events is not None else MemoryEventBus()
        # Which stores came from the index: a tenant's kit takes them from the tenant's index.
        self._from_index = {
            "subscriptions": subscriptions is None and hasattr(index, "ups_subscriptions"),
            "workitems": workitems is None and hasattr(index, "ups_workitems"),
            "changefeed": changefeed is None and hasattr(index, "change_feed"),
        }
        if subscriptions is None:
            factory = getattr(index, "ups_subscriptions", None)
            subscriptions = factory() if factory is not None else MemorySubscriptionStore()
        if not isinstance(self.events, EventBus) or not isinstance(subscriptions, SubscriptionStore):
            raise ConfigurationError("events must implement dicomweb_kit.EventBus, subscriptions SubscriptionStore")
        self.subscriptions: SubscriptionStore = subscriptions
        if workitems is None:
            factory = getattr(index, "ups_workitems", None)
            workitems = factory() if factory is not None else MemoryWorkitemStore()
        if not isinstance(workitems, WorkitemStore):
            raise ConfigurationError(
                f"workitems must implement dicomweb_kit.WorkitemStore; {type(workitems).__name__} does not"
            )
        self.workitems: WorkitemStore = workitems
        self.before_store = before_store
        self.after_store = (
            AfterStoreRunner(after_store, concurrency=after_store_concurrency) if after_store is not None else None
        )
        if changefeed is None:
            factory = getattr(index, "change_feed", None)
            changefeed = factory() if factory is not None else None
        if changefeed is not None and not isinstance(changefeed, ChangeFeed):
            raise ConfigurationError(
                f"changefeed must implement dicomweb_kit.ChangeFeed; {type(changefeed).__name__} does not"
            )
        self.changefeed: ChangeFeed | None = changefeed
        if authorize is None and (identify is not None or hide_denied):
            raise ConfigurationError("identify and hide_denied take effect only with an authorize hook")
        self.authorizer = (
            Authorizer(authorize, identify=identify, hide_denied=hide_denied) if authorize is not None else None
        )
        if tenants is not None and not isinstance(index, TenantScoped):
            raise ConfigurationError(
                f"tenants= needs an index that can hold tenants; {type(index).__name__} has no for_tenant() "
                "(see dicomweb_kit.tenancy.TenantScoped)"
            )
        self.tenants = tenants
        #: The tenant this kit is the view of (:meth:`tenant`); ``None`` for the root kit.
        self.tenant_id: str | None = None
        self._tenant_kits: dict[str, DicomWeb] = {}
        self._tenant_lock = anyio.Lock()
        self._app: ASGIApp | None = None

    async def tenant(self, tenant: str, /) -> DicomWeb:
        """The kit of ``tenant``: the same services and hooks over that tenant's data only.

        Its adapters are the root adapters' ``for_tenant(tenant)`` (:mod:`dicomweb_kit.tenancy`),
        opened on first use; the same UIDs in two tenants are two different instances. The
        returned kit is cached and lives as long as this one (do not close it)::

            acme = await kit.tenant("acme")
            await acme.store(dataset)

        Raises:
            InvalidTenant: ``tenant`` is not a tenant ID (:data:`~dicomweb_kit.tenancy.TENANT_ID`).
            ConfigurationError: an adapter cannot hold tenants (no ``for_tenant``), or this kit
                is already a tenant's.
        """
        if self.tenant_id is not None:
            raise ConfigurationError(f"this kit is tenant {self.tenant_id!r}'s; tenants do not nest")
        tenant = validate_tenant(tenant)
        found = self._tenant_kits.get(tenant)
        if found is not None:
            return found
        async with self._tenant_lock:
            found = self._tenant_kits.get(tenant)
            if found is None:
                found = await self._open_tenant(tenant)
                self._tenant_kits[tenant] = found
        return found

    async def _open_tenant(self, tenant: str) -> DicomWeb:
        child = copy.copy(self)
        child.tenant_id, child.tenants, child._app, child._tenant_kits = tenant, None, None, {}
        child.blobs = (
            self.blobs.for_tenant(tenant)
            if isinstance(self.blobs, TenantScoped)
            else PrefixedBlobStore(self.blobs, tenant)
        )
        index: Any = _scoped(self.index, tenant, "index")
        child.index = index
        child.workitems = (
            index.ups_workitems() if self._from_index["workitems"] else _scoped(self.workitems, tenant, "workitems")
        )
        child.subscriptions = (
            index.ups_subscriptions()
            if self._from_index["subscriptions"]
            else _scoped(self.subscriptions, tenant, "subscriptions")
        )
        if self._from_index["changefeed"]:
            child.changefeed = index.change_feed()
        elif self.changefeed is not None:
            child.changefeed = _scoped(self.changefeed, tenant, "changefeed")
        public_url = self.settings.public_url
        if public_url and self.tenants is not None:
            # The operator's public URL is where the kit's app is; a tenant's service is below it.
            prefix: str = getattr(self.tenants, "path_of", lambda _tenant: "")(tenant)
            child.settings = msgspec.structs.replace(self.settings, public_url=public_url.rstrip("/") + prefix)
        child.events = TenantEventBus(self.events, tenant)
        child.render_cache = TenantRenderCache(self.render_cache, tenant)
        if self.before_store is not None:
            child.before_store = _before_store_for(self.before_store, tenant)
        if self.after_store is not None:
            child.after_store = self.after_store.for_tenant(tenant)
        for adapter in (child.blobs, child.index, child.workitems, child.subscriptions):
            opener = getattr(adapter, "open", None)
            if opener is not None:
                await opener()
        return child

    @property
    def app(self) -> ASGIApp:
        """The ASGI application serving the DICOMweb resources at its root."""
        if self._app is None:
            from .web.app import create_app
            from .web.tenants import tenant_app

            self._app = tenant_app(self, self.tenants) if self.tenants is not None else create_app(self)
        return self._app

    @property
    def lifespan(self) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
        """A lifespan for the host app: ``Starlette(lifespan=kit.lifespan)``."""

        @contextlib.asynccontextmanager
        async def lifespan(_app: Any) -> AsyncIterator[None]:
            async with self:
                yield

        return lifespan

    async def __aenter__(self) -> Self:
        # Optional adapter hook `async def open()`: create tables, connect pools, sweep temp files.
        for adapter in (self.blobs, self.index, self.workitems, self.subscriptions, self.events):
            opener = getattr(adapter, "open", None)
            if opener is not None:
                await opener()
        if self.after_store is not None:
            await self.after_store.start()
        return self

    def changes(
        self, *, after: int = 0, filter: ChangeFilter | None = None, poll_interval: float = 5.0
    ) -> AsyncIterator[ChangeEntry]:
        """The change feed from sequence ``after`` on, then live, without gaps::

            async for change in kit.changes(after=last_seen, filter=ChangeFilter(modality="CT")):
                ...

        It ends when the kit shuts down. A consumer that stops early should close it
        (``contextlib.aclosing``) to release its event bus subscription at once.

        Raises:
            ConfigurationError: the kit has no change feed (its index keeps none).
        """
        if self.changefeed is None:
            raise ConfigurationError("this kit has no change feed: its index keeps none (pass changefeed=...)")
        return follow(self.changefeed, self, after=after, filter=filter, poll_interval=poll_interval)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the adapters (which close the adapters they gave the tenants' kits)."""
        try:
            if self.after_store is not None:
                await self.after_store.stop()
            await self.workitems.aclose()
            await self.events.aclose()
            await self.subscriptions.aclose()
            await self.index.aclose()
        finally:
            await self.blobs.aclose()


def _scoped(adapter: Any, tenant: str, role: str) -> Any:
    if not isinstance(adapter, TenantScoped):
        raise ConfigurationError(
            f"the {role} ({type(adapter).__name__}) cannot hold tenants: it has no for_tenant() "
            "(see dicomweb_kit.tenancy.TenantScoped)"
        )
    return adapter.for_tenant(tenant)


def _before_store_for(hook: BeforeStore, tenant: str) -> BeforeStore:
    async def before_store(incoming: IncomingInstance) -> Coerce | Reject | None:
        with acting_for(tenant):
            return await hook(incoming)

    return before_store
