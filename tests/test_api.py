"""The kit's Python API (``dicomweb_kit.api``): the DICOMweb operations as async methods, on the
memory and files+SQLite adapters; results checked against pydicom's own reading."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pydicom
import pytest
from conftest import PYDICOM_TEST_FILES
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

from dicomweb_kit import (
    DicomWeb,
    InstanceRejected,
    InvalidQuery,
    InvalidRequest,
    InvalidUid,
    Level,
    NotAcceptable,
    Query,
    ResourceKey,
    ResourceNotFound,
    SingleValue,
    Term,
    WorkitemRefused,
)
from dicomweb_kit.testing import make_dataset, part10_bytes
from dicomweb_kit.testing.workitems import completion_attributes, make_workitem

pytestmark = pytest.mark.anyio


def uid_of(result: dict[str, object], tag: str) -> str:
    return str(result[tag]["Value"][0])  # type: ignore[index]


async def test_store_dataset_and_retrieve_the_same_bytes(kit: DicomWeb) -> None:
    ds = make_dataset(patient_id="API-1")
    stored = await kit.store(ds)
    assert stored.record.instance_uid == ds.SOPInstanceUID
    assert stored.record.key == ResourceKey(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    data = await kit.retrieve_instance(stored.record.key)
    assert data == part10_bytes(ds)
    assert pydicom.dcmread(io.BytesIO(data)).PatientID == "API-1"
    streamed = b"".join([chunk async for chunk in await kit.open_instance(stored.record.key)])
    assert streamed == data


async def test_store_part10_bytes_and_a_stream(kit: DicomWeb) -> None:
    data = (PYDICOM_TEST_FILES / "CT_small.dcm").read_bytes()
    stored = await kit.store(data)
    assert await kit.retrieve_instance(stored.record.key) == data

    other = part10_bytes(make_dataset())

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(other), 100):
            yield other[start : start + 100]

    streamed = await kit.store(chunks())
    assert await kit.retrieve_instance(streamed.record.key) == other


async def test_store_a_dataset_built_in_memory(kit: DicomWeb) -> None:
    ds = make_dataset()
    del ds.file_meta  # as a host builds one: no file meta, no encoding
    stored = await kit.store(ds)
    back = pydicom.dcmread(io.BytesIO(await kit.retrieve_instance(stored.record.key)))
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert back.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert back.PixelData == ds.PixelData
    assert "file_meta" not in ds.__dict__  # the caller's dataset is unchanged
    bare = pydicom.Dataset()
    bare.PatientName = "No^Uids"
    with pytest.raises(InstanceRejected) as rejected:
        await kit.store(bare)
    assert rejected.value.failure_reason == 0xC000


async def test_store_rejections_raise_the_kits_errors(kit: DicomWeb) -> None:
    with pytest.raises(InstanceRejected) as garbage:
        await kit.store(b"not a DICOM file at all" * 10)
    assert garbage.value.failure_reason == 0xC000
    ds = make_dataset()
    with pytest.raises(InstanceRejected) as other_study:
        await kit.store(ds, study=generate_uid())
    assert other_study.value.failure_reason == 0xC409  # PS3.18 §10.5.1: not the target study
    with pytest.raises(TypeError):
        await kit.store("a path is not an instance")  # type: ignore[arg-type]


async def test_store_all_reports_each_instance(kit: DicomWeb) -> None:
    study = generate_uid()
    good = [make_dataset(study=study), make_dataset(study=study)]
    outcome = await kit.store_all([good[0], b"garbage" * 30, part10_bytes(good[1])])
    assert sorted(s.record.instance_uid for s in outcome.stored) == sorted(ds.SOPInstanceUID for ds in good)
    assert [f.failure_reason for f in outcome.failed] == [0xC000]

    async def streamed() -> AsyncIterator[bytes]:
        yield part10_bytes(make_dataset(study=study))

    again = await kit.store_all(streamed())
    assert len(again.stored) == 1 and not again.failed
    assert len((await kit.search_instances(study=study)).results) == 3

    async def broken() -> AsyncIterator[bytes]:
        yield part10_bytes(make_dataset(study=study))
        raise OSError("the source went away")

    with pytest.raises(OSError, match="went away"):
        await kit.store_all(broken())
    assert len((await kit.search_instances(study=study)).results) == 4  # what came before is kept


async def test_search_with_match_keys_and_paging(kit: DicomWeb) -> None:
    names = ["Alpha^Ann", "Beta^Bob", "Gamma^Gus"]
    datasets = [
        make_dataset(patient_name=n, patient_id="PAGED", study_date=f"2024010{i + 1}") for i, n in enumerate(names)
    ]
    await kit.store_all(datasets)
    await kit.store(make_dataset(patient_id="OTHER"))

    everything = await kit.search_studies(PatientID="PAGED", orderby=["StudyDate"])
    assert [uid_of(r, "0020000D") for r in everything.results] == [ds.StudyInstanceUID for ds in datasets]
    assert not everything.has_more
    first = await kit.search_studies(PatientID="PAGED", orderby=["StudyDate"], limit=2)
    rest = await kit.search_studies(PatientID="PAGED", orderby=["StudyDate"], limit=2, offset=2)
    assert first.has_more and not rest.has_more
    assert first.results + rest.results == everything.results

    found = await kit.search_studies(PatientName="beta*", fuzzy=True)
    assert [uid_of(r, "0020000D") for r in found.results] == [datasets[1].StudyInstanceUID]
    ranged = await kit.search_studies(PatientID="PAGED", StudyDate="20240102-")
    assert len(ranged.results) == 2
    listed = await kit.search_studies(StudyInstanceUID=[datasets[0].StudyInstanceUID, datasets[2].StudyInstanceUID])
    assert len(listed.results) == 2
    # RetrieveURL relative to the service root, or under base_url
    assert uid_of(found.results[0], "00081190") == f"studies/{datasets[1].StudyInstanceUID}"
    based = await kit.search_studies(PatientName="Beta^Bob", base_url="https://pacs/dicom-web/")
    assert uid_of(based.results[0], "00081190") == f"https://pacs/dicom-web/studies/{datasets[1].StudyInstanceUID}"


async def test_search_series_and_instances_in_scope(kit: DicomWeb) -> None:
    study, series = generate_uid(), generate_uid()
    one = make_dataset(study=study, series=series, InstanceNumber=2)
    two = make_dataset(study=study, series=series, InstanceNumber=1)
    other_series = make_dataset(study=study, modality="MR")
    await kit.store_all([one, two, other_series])

    ct = await kit.search_series(study=study, Modality="CT")
    assert [uid_of(r, "0020000E") for r in ct.results] == [series]
    instances = await kit.search_instances(study=study, series=series, orderby=["InstanceNumber"])
    assert [uid_of(r, "00080018") for r in instances.results] == [two.SOPInstanceUID, one.SOPInstanceUID]
    with_field = await kit.search_instances(study=study, series=series, includefield=["Rows"], limit=1)
    assert with_field.results[0]["00280010"]["Value"] == [4]
    assert with_field.has_more

    query = Query(level=Level.SERIES, scope=ResourceKey(study), terms=(Term(0x00080060, "CS", SingleValue("MR")),))
    mr = await kit.search_series(query)
    assert [uid_of(r, "0020000E") for r in mr.results] == [other_series.SeriesInstanceUID]


async def test_search_errors(kit: DicomWeb) -> None:
    with pytest.raises(InvalidRequest):
        await kit.search_studies(Query(level=Level.STUDY), PatientID="P1")  # a Query or match keys
    with pytest.raises(InvalidRequest):
        await kit.search_instances(series=generate_uid())  # a series only within its study
    with pytest.raises(InvalidRequest):
        await kit.retrieve_instance(ResourceKey(generate_uid()))  # a study is not an instance
    with pytest.raises(InvalidQuery):
        await kit.search_studies(NotAKeyword="x")
    with pytest.raises(InvalidQuery):
        await kit.search_studies(StudyDate="yesterday")
    with pytest.raises(InvalidUid):
        await kit.search_series(study="not-a-uid")


async def test_metadata(kit: DicomWeb) -> None:
    ds = make_dataset(patient_name="Meta^Data")
    stored = await kit.store(ds)
    [instance] = await kit.metadata(stored.record.key)
    assert instance["00100010"]["Value"] == [{"Alphabetic": "Meta^Data"}]
    assert instance["00080018"]["Value"] == [ds.SOPInstanceUID]
    # Pixel Data is bulk data, located under the service root (or base_url)
    assert instance["7FE00010"]["BulkDataURI"].startswith(f"/{stored.record.key.path()}")
    [based] = await kit.metadata(ResourceKey(ds.StudyInstanceUID), base_url="https://pacs/dicom-web")
    assert based["7FE00010"]["BulkDataURI"].startswith(f"https://pacs/dicom-web/{stored.record.key.path()}")
    with pytest.raises(ResourceNotFound):
        await kit.metadata(ResourceKey(generate_uid()))


async def test_frames_equal_pydicoms_pixels(kit: DicomWeb) -> None:
    path = PYDICOM_TEST_FILES / "rtdose_expb.dcm"  # 15 frames, 32-bit, big endian
    stored = await kit.store(path.read_bytes())
    frames = await kit.frames(stored.record.key, [3, 1])
    assert frames.transfer_syntax_uid == ExplicitVRLittleEndian  # native frames go little endian
    pixels = pydicom.dcmread(path).pixel_array
    assert frames.frames == [pixels[2].astype("<u4").tobytes(), pixels[0].astype("<u4").tobytes()]
    with pytest.raises(ResourceNotFound, match=r"1\.\.15"):
        await kit.frames(stored.record.key, [16])


async def test_frames_converted_on_request(kit: DicomWeb) -> None:
    path = PYDICOM_TEST_FILES / "MR_small_RLE.dcm"
    stored = await kit.store(path.read_bytes())
    [rle] = (await kit.frames(stored.record.key, [1])).frames
    native = await kit.frames(stored.record.key, [1], transfer_syntax=ExplicitVRLittleEndian)
    expected = pydicom.dcmread(path).pixel_array
    assert np.array_equal(np.frombuffer(native.frames[0], "<i2").reshape(expected.shape), expected)
    assert rle != native.frames[0]
    with pytest.raises(NotAcceptable):
        await kit.frames(stored.record.key, [1], transfer_syntax="1.2.840.10008.1.2.4.100")  # MPEG2


async def test_retrieve_transcoded_and_a_scope(kit: DicomWeb) -> None:
    path = PYDICOM_TEST_FILES / "MR_small.dcm"
    stored = await kit.store(path.read_bytes())
    data = await kit.retrieve_instance(stored.record.key, transfer_syntax=RLELossless)
    decoded = pydicom.dcmread(io.BytesIO(data))
    assert decoded.file_meta.TransferSyntaxUID == RLELossless
    assert np.array_equal(decoded.pixel_array, pydicom.dcmread(path).pixel_array)
    with pytest.raises(NotAcceptable, match="8.7.3.5"):
        await kit.retrieve_instance(stored.record.key, transfer_syntax="1.2.840.10008.1.2")  # Implicit VR LE
    instances = [i async for i in await kit.retrieve(ResourceKey(stored.record.study_uid))]
    assert [i.data for i in instances] == [path.read_bytes()]
    with pytest.raises(ResourceNotFound):
        await kit.retrieve_instance(ResourceKey(stored.record.study_uid, stored.record.series_uid, generate_uid()))


async def test_rendered_and_thumbnail(kit: DicomWeb) -> None:
    stored = await kit.store((PYDICOM_TEST_FILES / "rtdose.dcm").read_bytes())
    image = await kit.rendered(stored.record.key, frames=[2], media_type="image/png", viewport=(32, 32))
    assert image.media_type == "image/png"
    with Image.open(io.BytesIO(image.data)) as png:
        assert png.size == (32, 32)
    windowed = await kit.rendered(stored.record.key, frames=[2], media_type="image/png", window=(100, 1))
    with Image.open(io.BytesIO(windowed.data)) as png:
        assert set(np.unique(np.asarray(png))) <= {0, 255}  # a width-1 window is a threshold
    thumb = await kit.thumbnail(ResourceKey(stored.record.study_uid))
    assert thumb.media_type == "image/jpeg" and thumb.data.startswith(b"\xff\xd8")
    with pytest.raises(NotAcceptable):
        await kit.rendered(stored.record.key, media_type="text/plain")
    with pytest.raises(InvalidRequest, match="window width"):
        await kit.rendered(stored.record.key, window=(100, 0.5))  # PS3.3 §C.11.2.1.2.1: LINEAR width >= 1
    with pytest.raises(InvalidRequest, match="viewport"):
        await kit.rendered(stored.record.key, viewport=(0, 10))
    with pytest.raises(InvalidRequest, match="quality"):
        await kit.rendered(stored.record.key, quality=101)


async def test_delete(kit: DicomWeb) -> None:
    stored = await kit.store(make_dataset())
    assert await kit.delete(ResourceKey(stored.record.study_uid)) == 1
    with pytest.raises(ResourceNotFound):
        await kit.retrieve_instance(stored.record.key)


async def test_workitem_create_claim_complete(kit: DicomWeb) -> None:
    created = await kit.create_workitem(make_workitem(label="Lung AI", patient_id="WI-1"))
    uid = created.workitem.uid
    assert created.workitem.state == "SCHEDULED"
    page = await kit.search_workitems(PatientID="WI-1", ProcedureStepState="SCHEDULED")
    assert [item.uid for item in page.items] == [uid]

    claimed = await kit.claim_workitem(uid)
    lock = claimed.workitem.transaction_uid
    assert claimed.workitem.state == "IN PROGRESS" and lock
    with pytest.raises(WorkitemRefused) as again:
        await kit.claim_workitem(uid)  # PS3.4 §CC.1.1: already IN PROGRESS
    assert again.value.http_status == 409
    with pytest.raises(WorkitemRefused):
        await kit.change_workitem_state(uid, "COMPLETED", transaction_uid=lock)  # Final State not met: C304
    await kit.update_workitem(uid, completion_attributes(), transaction_uid=lock)
    with pytest.raises(WorkitemRefused):
        await kit.change_workitem_state(uid, "COMPLETED", transaction_uid=generate_uid())  # not its lock
    done = await kit.change_workitem_state(uid, "COMPLETED", transaction_uid=lock)
    assert done.workitem.state == "COMPLETED"
    assert (await kit.retrieve_workitem(uid)).state == "COMPLETED"
    assert not (await kit.search_workitems(PatientID="WI-1", ProcedureStepState="SCHEDULED")).items


async def test_workitem_cancellation_and_errors(kit: DicomWeb) -> None:
    uid = (await kit.create_workitem(make_workitem())).workitem.uid
    canceled = await kit.request_workitem_cancellation(uid)
    assert canceled.workitem.state == "CANCELED"
    with pytest.raises(ResourceNotFound):
        await kit.retrieve_workitem(generate_uid())
    with pytest.raises(InvalidQuery):
        await kit.search_workitems(NotAKeyword="x")


async def test_the_api_and_http_answer_alike(kit: DicomWeb, client: httpx.AsyncClient) -> None:
    """The HTTP handlers and the API run the same services: the same rows, the same metadata."""
    ds = make_dataset(patient_id="ALIKE", patient_name="Same^Answer")
    stored = await kit.store(ds)
    base = str(client.base_url).rstrip("/")
    params = {"PatientID": "ALIKE", "includefield": "all"}
    over_http = (await client.get("/studies", params=params)).json()
    assert (await kit.search_studies(PatientID="ALIKE", includefield="all", base_url=base)).results == over_http
    path = stored.record.key.path()
    assert await kit.metadata(stored.record.key, base_url=base) == (await client.get(f"/{path}/metadata")).json()
    frame = await client.get(f"/{path}/frames/1", headers={"Accept": "application/octet-stream"})
    assert (await kit.frames(stored.record.key, [1])).frames == [frame.content]
