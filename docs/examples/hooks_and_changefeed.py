"""Ingest hooks and the change feed: validate and coerce before store, react after, follow changes."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
from dicomweb_kit_adapters.memory import MemoryBlobStore, MemoryIndex

from dicomweb_kit import ChangeFilter, DicomWeb, InstanceRecord, InstanceRejected
from dicomweb_kit.hooks import Coerce, IncomingInstance, Reject
from dicomweb_kit.testing import make_dataset


async def before_store(incoming: IncomingInstance) -> Reject | Coerce | None:
    ds = incoming.dataset  # the header, a private copy
    if not ds.get("PatientID"):
        return Reject("Patient ID is required", failure_reason=0xA900)
    if ds.get("IssuerOfPatientID") != "HOSP-A":
        return Coerce({"IssuerOfPatientID": "HOSP-A"})  # stored and indexed so; Warning 0xB000
    return None


pipeline: list[str] = []


async def after_store(records: Sequence[InstanceRecord]) -> None:
    pipeline.extend(record.instance_uid for record in records)  # e.g. enqueue an AI job


async def main() -> None:
    kit = DicomWeb(blobs=MemoryBlobStore(), index=MemoryIndex(), before_store=before_store, after_store=after_store)
    async with kit:
        stored = await kit.store(make_dataset(patient_id="P1", modality="MR"))
        assert stored.warning_reason == 0xB000  # coerced
        [instance] = await kit.metadata(stored.record.key)
        assert instance["00100021"]["Value"] == ["HOSP-A"]
        try:
            await kit.store(make_dataset(patient_id=""))
        except InstanceRejected as rejected:
            assert (rejected.failure_reason, rejected.message) == (0xA900, "Patient ID is required")
        else:
            raise AssertionError("an instance without Patient ID was stored")
        await kit.store(make_dataset(patient_id="P2", modality="CT"))
        await kit.delete(stored.record.key)

        # The change feed: what is there, then live; resume from the last sequence you saw.
        seen = []
        with anyio.fail_after(5):
            async for change in kit.changes(after=0, filter=ChangeFilter(modality="MR")):
                seen.append((change.sequence, change.action, change.instance_uid))
                if change.action == "delete":
                    break
        assert [action for _, action, _ in seen] == ["create", "delete"]
        assert {uid for _, _, uid in seen} == {stored.record.instance_uid}
    # After-store calls run in the background, never delaying a store; leaving the lifespan
    # lets the pending ones finish (for up to 10 s).
    assert len(pipeline) == 2


if __name__ == "__main__":
    anyio.run(main)
