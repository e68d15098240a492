"""The Python API from a host: store, search, retrieve, and a workitem from SCHEDULED to COMPLETED."""

from __future__ import annotations

import io

import anyio
import pydicom
from dicomweb_kit_adapters.memory import MemoryBlobStore, MemoryIndex

from dicomweb_kit import DicomWeb, ResourceKey, ResourceNotFound
from dicomweb_kit.testing import make_dataset
from dicomweb_kit.testing.workitems import completion_attributes, make_workitem


async def main() -> None:
    async with DicomWeb(blobs=MemoryBlobStore(), index=MemoryIndex()) as kit:
        # Store: a pydicom Dataset, Part 10 bytes, or an async stream of them.
        ds = make_dataset(patient_name="Doe^Jane", patient_id="P1", modality="CT")
        stored = await kit.store(ds)
        key = stored.record.key  # ResourceKey(study, series, instance)

        # Search: match keys as keyword arguments (QIDO-RS syntax), typed paging.
        page = await kit.search_studies(PatientName="doe*", fuzzy=True, limit=10)
        assert [s["0020000D"]["Value"][0] for s in page.results] == [ds.StudyInstanceUID]
        assert not page.has_more
        series = await kit.search_series(study=key.study, Modality="CT")
        assert len(series.results) == 1

        # Retrieve: the Part 10 bytes, the metadata (DICOM JSON), frames, a rendered image.
        again = pydicom.dcmread(io.BytesIO(await kit.retrieve_instance(key)))
        assert again.SOPInstanceUID == ds.SOPInstanceUID
        [metadata] = await kit.metadata(ResourceKey(key.study))
        assert metadata["00100020"]["Value"] == ["P1"]
        frames = await kit.frames(key, [1])
        assert frames.frames[0] == ds.PixelData
        png = await kit.rendered(key, media_type="image/png", viewport=(64, 64))
        assert png.data.startswith(b"\x89PNG")

        # Errors are the kit's own exceptions, the same the HTTP layer maps to statuses.
        try:
            await kit.metadata(ResourceKey("1.2.3.4"))
        except ResourceNotFound as missing:
            assert missing.http_status == 404  # "no study 1.2.3.4 is stored here"
        else:
            raise AssertionError("a study that was never stored was found")

        # A workitem (UPS): created SCHEDULED, claimed, its result recorded, COMPLETED.
        created = await kit.create_workitem(make_workitem(label="Lung nodule AI", patient_id="P1"))
        uid = created.workitem.uid
        claimed = await kit.claim_workitem(uid)  # IN PROGRESS, locked by a new Transaction UID
        lock = claimed.workitem.transaction_uid
        await kit.update_workitem(uid, completion_attributes(), transaction_uid=lock)
        done = await kit.change_workitem_state(uid, "COMPLETED", transaction_uid=lock)
        assert done.workitem.state == "COMPLETED"
        assert not (await kit.search_workitems(ProcedureStepState="SCHEDULED")).items


if __name__ == "__main__":
    anyio.run(main)
