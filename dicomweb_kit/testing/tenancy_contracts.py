"""The tenancy contract: a kit's tenants never see each other's data, on any adapters.

Subclass :class:`TenancyContract` and provide an async fixture ``tenancy_kit``: a
:class:`~dicomweb_kit.DicomWeb` on the adapters under test, entered (``async with``). The same
UIDs are stored in two tenants with different contents; every read path must give each tenant
its own, and the root kit (no tenant) neither.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydicom.uid import generate_uid

from ..changefeed import ChangeEntry
from ..errors import ResourceNotFound
from ..kit import DicomWeb
from ..resources import ResourceKey
from ..tenancy import InvalidTenant
from .datasets import make_dataset
from .workitems import make_workitem

__all__ = ["TenancyContract"]

PATIENT_NAME = "00100010"


def _patient(entity: dict[str, Any]) -> str:
    return str(entity[PATIENT_NAME]["Value"][0]["Alphabetic"])


class TenancyContract:
    """Isolation of tenants' data (``pytest.mark.anyio`` applies to every test)."""

    pytestmark = pytest.mark.anyio

    @pytest.fixture
    async def same_uids(self, tenancy_kit: DicomWeb) -> ResourceKey:
        """One instance with the same UIDs in tenants ``north`` and ``south``, told apart by name."""
        key = ResourceKey(generate_uid(), generate_uid(), generate_uid())
        for tenant in ("north", "south"):
            kit = await tenancy_kit.tenant(tenant)
            ds = make_dataset(study=key.study, series=key.series, instance=key.instance, patient_name=f"{tenant}^Pat")
            await kit.store(ds)
        return key

    async def test_a_tenant_kit_is_cached(self, tenancy_kit: DicomWeb) -> None:
        assert await tenancy_kit.tenant("north") is await tenancy_kit.tenant("north")
        assert (await tenancy_kit.tenant("north")).tenant_id == "north"

    async def test_a_bad_tenant_id_is_refused(self, tenancy_kit: DicomWeb) -> None:
        for bad in ("", "../up", "a/b", "-dash", "x" * 65, "sp ace"):
            with pytest.raises(InvalidTenant):
                await tenancy_kit.tenant(bad)

    async def test_search_sees_only_the_tenants_own(self, tenancy_kit: DicomWeb, same_uids: ResourceKey) -> None:
        for tenant in ("north", "south"):
            found = await (await tenancy_kit.tenant(tenant)).search_studies()
            assert [_patient(entity) for entity in found.results] == [f"{tenant}^Pat"]
        assert (await tenancy_kit.search_studies()).results == []
        assert (await (await tenancy_kit.tenant("east")).search_studies()).results == []

    async def test_metadata_and_bytes_are_the_tenants_own(self, tenancy_kit: DicomWeb, same_uids: ResourceKey) -> None:
        north, south = await tenancy_kit.tenant("north"), await tenancy_kit.tenant("south")
        [north_meta] = await north.metadata(same_uids)
        [south_meta] = await south.metadata(same_uids)
        assert (_patient(north_meta), _patient(south_meta)) == ("north^Pat", "south^Pat")
        assert b"north^Pat" in await north.retrieve_instance(same_uids)
        assert b"south^Pat" in await south.retrieve_instance(same_uids)
        with pytest.raises(ResourceNotFound):
            await tenancy_kit.retrieve_instance(same_uids)

    async def test_delete_in_one_tenant_leaves_the_other(self, tenancy_kit: DicomWeb, same_uids: ResourceKey) -> None:
        north, south = await tenancy_kit.tenant("north"), await tenancy_kit.tenant("south")
        assert await north.delete(ResourceKey(same_uids.study)) == 1
        assert (await north.search_studies()).results == []
        assert b"south^Pat" in await south.retrieve_instance(same_uids)

    async def test_storing_again_in_one_tenant_leaves_the_other(
        self, tenancy_kit: DicomWeb, same_uids: ResourceKey
    ) -> None:
        """The duplicate policy (``Settings.on_duplicate``) sees only the tenant's own instance:
        the UIDs already in ``north`` make ``south``'s store a duplicate of nothing else."""
        north, south = await tenancy_kit.tenant("north"), await tenancy_kit.tenant("south")
        east = await tenancy_kit.tenant("east")
        ds = make_dataset(
            study=same_uids.study, series=same_uids.series, instance=same_uids.instance, patient_name="east^Pat"
        )
        await east.store(ds)  # new in east, whatever north and south hold
        assert _patient((await east.metadata(same_uids))[0]) == "east^Pat"
        ds.PatientName = "north^Again"
        await north.store(ds)  # a duplicate in north: kept as first stored (the default policy)
        assert _patient((await north.metadata(same_uids))[0]) == "north^Pat"
        assert _patient((await south.metadata(same_uids))[0]) == "south^Pat"

    async def test_blobs_are_kept_apart(self, tenancy_kit: DicomWeb, same_uids: ResourceKey) -> None:
        north, south = await tenancy_kit.tenant("north"), await tenancy_kit.tenant("south")
        north_keys = {key async for key in north.blobs.iter_keys()}
        south_keys = {key async for key in south.blobs.iter_keys()}
        assert len(north_keys) == len(south_keys) == 1
        assert north_keys.isdisjoint(south_keys)
        assert [key async for key in tenancy_kit.blobs.iter_keys()] == []

    async def test_change_feeds_are_the_tenants_own(self, tenancy_kit: DicomWeb, same_uids: ResourceKey) -> None:
        feeds: dict[str, list[ChangeEntry]] = {}
        for tenant in ("north", "south"):
            feed = (await tenancy_kit.tenant(tenant)).changefeed
            if feed is None:
                pytest.skip("these adapters keep no change feed")
            feeds[tenant] = await feed.read()
        assert [(e.action, e.instance_uid) for e in feeds["north"]] == [("create", same_uids.instance)]
        assert [(e.action, e.instance_uid) for e in feeds["south"]] == [("create", same_uids.instance)]
        if tenancy_kit.changefeed is not None:
            assert await tenancy_kit.changefeed.read() == []

    async def test_workitems_with_the_same_uid_are_the_tenants_own(self, tenancy_kit: DicomWeb) -> None:
        uid = generate_uid()
        for tenant in ("north", "south"):
            await (await tenancy_kit.tenant(tenant)).create_workitem(make_workitem(label=f"{tenant} job"), uid=uid)
        for tenant in ("north", "south"):
            item = await (await tenancy_kit.tenant(tenant)).retrieve_workitem(uid)
            assert item.attributes["00741204"]["Value"] == [f"{tenant} job"]  # Procedure Step Label
        assert (await tenancy_kit.search_workitems()).items == []
