"""DicomWeb: one DICOMweb service built from a blob store, an instance index and settings."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from .api import DicomWebApi
from .authorization import Authorize, Authorizer, Identify
from .changefeed import ChangeEntry, ChangeFeed, ChangeFilter, follow
from .errors import ConfigurationError
from .events import EventBus, MemoryEventBus
from .hooks import AfterStore, AfterStoreRunner, BeforeStore
from .index import InstanceIndex
from .render_cache import MemoryRenderCache, RenderCache
from .settings import Settings
from .storage import BlobStore
from .ups.memory import MemoryWorkitemStore
from .ups.store import WorkitemStore
from .ups.subscriptions import MemorySubscriptionStore, SubscriptionStore

if TYPE_CHECKING:
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
        self._app: ASGIApp | None = None

    @property
    def app(self) -> ASGIApp:
        """The ASGI application serving the DICOMweb resources at its root."""
        if self._app is None:
            from .web.app import create_app

            self._app = create_app(self)
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
        """Close both adapters."""
        try:
            if self.after_store is not None:
                await self.after_store.stop()
            await self.workitems.aclose()
            await self.events.aclose()
            await self.subscriptions.aclose()
            await self.index.aclose()
        finally:
            await self.blobs.aclose()
