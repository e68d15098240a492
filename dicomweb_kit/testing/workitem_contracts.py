"""The contract suite of :class:`~dicomweb_kit.WorkitemStore`: subclass and provide a
``workitem_store`` fixture (a fresh, empty, opened store per test)."""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
import pytest

from ..query.qido_params import parse_qido
from ..query.terms import Query
from ..resources import Level, ResourceKey
from ..ups.store import Workitem, WorkitemStore, search_workitems
from .workitems import make_workitem

__all__ = ["WorkitemStoreContract"]


def _item(n: int, **kw: Any) -> Workitem:
    uid = f"1.2.826.0.1.3680043.10.{n}"
    attributes = make_workitem(**kw)
    attributes["00080018"] = {"vr": "UI", "Value": [uid]}
    return Workitem(uid=uid, state="SCHEDULED", attributes=attributes)


def _query(*params: tuple[str, str]) -> Query:
    return parse_qido(list(params), Level.INSTANCE, ResourceKey(), default_limit=1000, max_limit=1000)


@pytest.mark.anyio
class WorkitemStoreContract:
    """What every :class:`~dicomweb_kit.WorkitemStore` does."""

    async def test_is_a_workitem_store(self, workitem_store: WorkitemStore) -> None:
        assert isinstance(workitem_store, WorkitemStore)

    async def test_create_then_get(self, workitem_store: WorkitemStore) -> None:
        item = _item(1, label="Ünïcode label ☃")
        assert await workitem_store.create(item)
        got = await workitem_store.get(item.uid)
        assert got == msgspec.structs.replace(item, version=1)
        assert await workitem_store.get("1.2.3.999") is None

    async def test_create_of_a_taken_uid_stores_nothing(self, workitem_store: WorkitemStore) -> None:
        assert await workitem_store.create(_item(1))
        assert not await workitem_store.create(_item(1, label="other"))
        got = await workitem_store.get(_item(1).uid)
        assert got is not None and got.attributes == _item(1).attributes

    async def test_replace_is_compare_and_set(self, workitem_store: WorkitemStore) -> None:
        item = _item(1)
        await workitem_store.create(item)
        claimed = msgspec.structs.replace(item, state="IN PROGRESS", transaction_uid="1.2.3")
        assert await workitem_store.replace(claimed, expected_version=1)
        assert not await workitem_store.replace(item, expected_version=1)  # stale
        got = await workitem_store.get(item.uid)
        assert got is not None and (got.state, got.transaction_uid, got.version) == ("IN PROGRESS", "1.2.3", 2)
        assert not await workitem_store.replace(_item(2), expected_version=1)  # no such workitem

    async def test_concurrent_replaces_from_one_version_one_wins(self, workitem_store: WorkitemStore) -> None:
        item = _item(1)
        await workitem_store.create(item)
        wins: list[str] = []

        async def claim(uid: str) -> None:
            changed = msgspec.structs.replace(item, state="IN PROGRESS", transaction_uid=uid)
            if await workitem_store.replace(changed, expected_version=1):
                wins.append(uid)

        async with anyio.create_task_group() as tg:
            for n in range(8):
                tg.start_soon(claim, f"1.2.3.{n}")
        assert len(wins) == 1
        got = await workitem_store.get(item.uid)
        assert got is not None and got.transaction_uid == wins[0] and got.version == 2

    async def test_search_equals_the_reference(self, workitem_store: WorkitemStore) -> None:
        items = [
            _item(n, label=label, priority=priority, patient_name=name, start=start)
            for n, (label, priority, name, start) in enumerate(
                [
                    ("CT AI", "HIGH", "Smith^John", "20260101080000"),
                    ("MR AI", "LOW", "SMITH^JANE", "20260102080000"),
                    ("CT QA", "MEDIUM", "Doe^Ann", "20260103080000"),
                    ("PET", "HIGH", "Müller^Jürgen", "20260104080000"),
                ]
            )
        ]
        for item in items:
            await workitem_store.create(item)
        claimed = msgspec.structs.replace(items[2], state="IN PROGRESS", transaction_uid="1.2.3")
        claimed.attributes["00741000"] = {"vr": "CS", "Value": ["IN PROGRESS"]}
        await workitem_store.replace(claimed, expected_version=1)
        stored = [claimed if item.uid == claimed.uid else item for item in items]
        queries = [
            (),
            (("ProcedureStepState", "SCHEDULED"),),
            (("ProcedureStepState", "IN PROGRESS"),),
            (("ScheduledProcedureStepPriority", "HIGH"),),
            (("ProcedureStepLabel", "CT*"),),
            (("PatientName", "smith*"),),
            (("PatientName", "muller"), ("fuzzymatching", "true")),
            (("ScheduledProcedureStepStartDateTime", "20260102-20260103"),),
            (("SOPInstanceUID", f"{items[1].uid},{items[3].uid}"),),
            (("orderby", "-ScheduledProcedureStepStartDateTime"),),
            (("limit", "2"),),
            (("limit", "2"), ("offset", "1")),
            (("orderby", "ProcedureStepLabel"), ("limit", "1"), ("offset", "3")),
        ]
        for params in queries:
            query = _query(*params)
            got = await workitem_store.search(query)
            expected = search_workitems(stored, query)
            assert [i.uid for i in got.items] == [i.uid for i in expected.items], params
            assert got.has_more == expected.has_more, params
            assert all(i.transaction_uid == (i.uid == claimed.uid and "1.2.3" or None) for i in got.items)
