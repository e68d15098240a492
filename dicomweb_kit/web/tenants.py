"""Tenant resolvers: which tenant an HTTP request is for, and the app that routes it there.

A kit built with ``tenants=`` serves, at :attr:`~dicomweb_kit.DicomWeb.app`, a dispatcher: it
asks the resolver for the request's tenant, then hands the request to that tenant's kit
(``await kit.tenant(t)``, see :mod:`dicomweb_kit.tenancy`) with :func:`current_tenant` set, so
the authorization and store hooks know it. Three resolvers cover the usual deployments:

* :class:`TenantFromPath` — a path segment: ``/tenants/{tenant}/dicom-web/studies``. URLs in
  responses (RetrieveURL, BulkDataURI, Location) keep the tenant's prefix, so a client follows
  them without knowing about tenants.
* :class:`TenantFromHeader` — a header set by the client or a gateway (``X-Tenant: acme``).
* :class:`TenantFromRequest` — the host's own function of the connection, e.g. a claim of the
  authenticated user (``lambda conn: conn.user.tenant``).

Each takes ``known``: the tenants that exist (a collection, or a sync/async predicate). Without
it any valid tenant ID is served (and its storage created on first use): right when a gateway in
front already admits only real tenants, wrong when clients may invent names.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.routing import Mount, compile_path

from ..errors import DicomWebError, Forbidden, InvalidRequest, ResourceNotFound
from ..tenancy import acting_for, validate_tenant
from .cross_origin import cross_origin
from .error_handlers import error_response
from .types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = [
    "Known",
    "TenantFromHeader",
    "TenantFromPath",
    "TenantFromRequest",
    "TenantResolver",
    "tenant_app",
]

#: The tenants that exist: a collection of IDs, or a predicate (sync or async).
Known = Collection[str] | Callable[[str], bool | Awaitable[bool]]

_POLICY_VIOLATION = 1008  # RFC 6455 §7.4.1: the close code for a refused WebSocket


@runtime_checkable
class TenantResolver(Protocol):
    """Finds the tenant of an HTTP or WebSocket request.

    A resolver that puts the tenant in the path may add ``path_of(tenant) -> str``, the tenant's
    path below the kit's mount: with ``Settings.public_url`` set, a tenant's URLs are that URL
    plus this path.
    """

    async def resolve(self, scope: Scope) -> tuple[str, Scope]:
        """The request's tenant ID and the scope to hand its kit's app (the same scope, or one
        whose ``root_path`` has taken in a path prefix).

        Raises:
            DicomWebError: no tenant (its status is the response: 400, 403 or 404).
        """
        ...


class _Resolver:
    def __init__(self, known: Known | None) -> None:
        self._known = known

    async def _admit(self, tenant: str) -> str:
        tenant = validate_tenant(tenant)
        known = self._known
        if known is None:
            return tenant
        if callable(known):
            verdict = known(tenant)
            exists = await verdict if inspect.isawaitable(verdict) else verdict
        else:
            exists = tenant in known
        if not exists:
            raise ResourceNotFound(f"there is no tenant {tenant!r} here")
        return tenant


class TenantFromPath(_Resolver):
    """The tenant is a segment of the path, relative to where the kit's app is mounted.

    Args:
        template: the path prefix of a tenant's service, with ``{tenant}`` once, e.g.
            ``"/tenants/{tenant}/dicom-web"`` (mount the kit's app at ``/``) or ``"/{tenant}"``
            (mount it at ``/dicom-web``: ``/dicom-web/acme/studies``).
        known: the tenants that exist (see the module docstring).
    """

    def __init__(self, template: str = "/{tenant}", *, known: Known | None = None) -> None:
        super().__init__(known)
        template = "/" + template.strip("/")
        if template.count("{tenant}") != 1 or template.count("{") != 1:
            raise ValueError(f"a tenant path template holds {{tenant}} once and no other parameter, not {template!r}")
        self.template = template
        self._prefix = Mount(template, app=Starlette())  # Starlette's own prefix matching
        self._exact, _, _ = compile_path(template)

    def path_of(self, tenant: str) -> str:
        """The path of ``tenant``'s service, relative to the kit's mount (for ``public_url``)."""
        return self.template.replace("{tenant}", validate_tenant(tenant))

    async def resolve(self, scope: Scope) -> tuple[str, Scope]:
        path = scope.get("path", "")
        root_path = scope.get("root_path", "")
        route_path = path[len(root_path) :] if path.startswith(root_path) else path
        if self._exact.fullmatch(route_path):  # the service root without its trailing slash
            scope = {**scope, "path": path + "/", "raw_path": scope.get("raw_path", b"") + b"/"}
        _, child = self._prefix.matches(scope)
        if not child:
            raise ResourceNotFound(f"no tenant in this path: a tenant's service is at {self.template}")
        params = dict(child["path_params"])
        tenant = await self._admit(params.pop("tenant"))
        return tenant, {**scope, **child, "path_params": params}


class TenantFromHeader(_Resolver):
    """The tenant is a request header.

    Args:
        name: the header (case-insensitive).
        default: the tenant of requests without the header; ``None``: they are refused (400).
        known: the tenants that exist (see the module docstring).
    """

    def __init__(self, name: str = "X-Tenant", *, default: str | None = None, known: Known | None = None) -> None:
        super().__init__(known)
        self.name = name
        self._key = name.lower().encode("latin-1")
        self.default = validate_tenant(default) if default is not None else None

    async def resolve(self, scope: Scope) -> tuple[str, Scope]:
        values = [value for key, value in scope.get("headers", ()) if key.lower() == self._key]
        if len(values) > 1:
            raise InvalidRequest(f"the {self.name} header is given {len(values)} times; give one tenant")
        if not values:
            if self.default is None:
                raise InvalidRequest(f"this service holds several tenants: name yours in the {self.name} header")
            return await self._admit(self.default), scope
        return await self._admit(values[0].decode("latin-1").strip()), scope


class TenantFromRequest(_Resolver):
    """The tenant is what the host's function says of the connection (Starlette
    :class:`~starlette.requests.HTTPConnection`: ``headers``, ``user``, ``auth``, ``url``...).

    Args:
        tenant_of: sync or async; ``None`` means this request has no tenant (403).
        known: the tenants that exist (see the module docstring).
    """

    def __init__(
        self,
        tenant_of: Callable[[HTTPConnection], str | None | Awaitable[str | None]],
        *,
        known: Known | None = None,
    ) -> None:
        super().__init__(known)
        self._tenant_of = tenant_of

    async def resolve(self, scope: Scope) -> tuple[str, Scope]:
        found = self._tenant_of(HTTPConnection(scope))
        tenant = await found if inspect.isawaitable(found) else found
        if tenant is None:
            raise Forbidden("no tenant is granted to this request")
        return await self._admit(tenant), scope


def tenant_app(kit: DicomWeb, resolver: TenantResolver) -> ASGIApp:
    """The ASGI app of a kit with tenants: each request goes to its tenant's kit."""
    idle = Starlette()  # answers the lifespan protocol; the host runs the kit's lifespan

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await idle(scope, receive, send)
            return
        try:
            tenant, scope = await resolver.resolve(scope)
            tenant_kit = await kit.tenant(tenant)
        except DicomWebError as err:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": _POLICY_VIOLATION, "reason": err.message[:120]})
            else:
                await error_response(err.http_status, err.message)(scope, receive, send)
            return
        with acting_for(tenant):
            await tenant_kit.app(scope, receive, send)

    # Outermost, as for a kit without tenants: the dispatcher's own errors carry CORS headers,
    # and a preflight (which carries no tenant header) is answered before a tenant is asked for.
    return cross_origin(app, kit.settings)
