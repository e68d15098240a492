"""The authorization hook: each user sees only the studies of their institution, over HTTP."""

from __future__ import annotations

import anyio
import httpx
from dicomweb_kit_adapters.memory import MemoryBlobStore, MemoryIndex
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount

from dicomweb_kit import DicomWeb
from dicomweb_kit.authorization import STUDY_KINDS, Access, Allow, Decision, Deny, Narrow
from dicomweb_kit.testing import make_dataset

# The host's own directory: who works where (in practice from its identity provider).
INSTITUTIONS = {"alice": "Fairview", "bob": "Lakeside"}


def identify(request: Request) -> str | None:
    """The identity, from the host's authentication (here a header its proxy sets)."""
    return request.headers.get("x-user")


async def authorize(user: str | None, access: Access) -> Decision:
    if user not in INSTITUTIONS:
        return Deny("sign in first")
    if access.kind in STUDY_KINDS:
        return Narrow.where(InstitutionName=INSTITUTIONS[user])  # searches, counts and paging included
    return Allow() if access.kind == "store" else Deny()


async def main() -> None:
    kit = DicomWeb(
        blobs=MemoryBlobStore(), index=MemoryIndex(), authorize=authorize, identify=identify, hide_denied=True
    )
    app = Starlette(routes=[Mount("/dicom-web", app=kit.app)], lifespan=kit.lifespan)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver/dicom-web"
    ) as client:
        # The host's own code calls the kit directly: no identity, nothing checked.
        fairview = await kit.store(make_dataset(InstitutionName="Fairview"))
        lakeside = await kit.store(make_dataset(InstitutionName="Lakeside"))

        def studies(response: httpx.Response) -> list[str]:
            return [study["0020000D"]["Value"][0] for study in response.json()]

        alice = {"X-User": "alice"}
        assert studies(await client.get("/studies", headers=alice)) == [fairview.record.study_uid]
        assert studies(await client.get("/studies", headers={"X-User": "bob"})) == [lakeside.record.study_uid]
        # Another institution's study is answered as if it were not stored (hide_denied).
        theirs = await client.get(f"/studies/{lakeside.record.study_uid}/metadata", headers=alice)
        assert theirs.status_code == 404
        assert (await client.get("/studies")).status_code == 403  # no identity


if __name__ == "__main__":
    anyio.run(main)
