"""Study, series and instance download as application/zip (services/archive.py, web/archive.py)."""

from __future__ import annotations

import io
import threading
import time
import zipfile
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pydicom
import pytest
from conftest import PYDICOM_TEST_FILES, LiveServer, host_app
from pydicom.fileset import FileSet
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from dicomweb_kit import BlobInfo, DicomWeb
from dicomweb_kit.services.archive import safe_component
from dicomweb_kit.testing import make_dataset, part10_bytes

pytestmark = pytest.mark.anyio

ZIP = "application/zip"


async def store(client: httpx.AsyncClient, *blobs: bytes) -> None:
    body = b"".join(b"--b\r\nContent-Type: application/dicom\r\n\r\n" + b + b"\r\n" for b in blobs) + b"--b--"
    r = await client.post("/studies", content=body, headers={"Content-Type": "multipart/related; boundary=b"})
    assert r.status_code == 200, r.text


def read_zip(response: httpx.Response) -> zipfile.ZipFile:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == ZIP
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None  # every entry's CRC-32
    return archive


@contextmanager
def file_set_of(path: Path) -> Iterator[FileSet]:
    """pydicom's view of the DICOMDIR at ``path`` (read through its offsets)."""
    file_set = FileSet(pydicom.dcmread(path))
    try:
        yield file_set
    finally:
        # A FileSet keeps a staging TemporaryDirectory for its whole life; pydicom has no public
        # way to drop it, and the implicit clean-up warns.
        file_set._stage["t"].cleanup()


def read_file(path: str) -> bytes:
    return Path(path).read_bytes()


def by_uid(archive: zipfile.ZipFile) -> dict[str, tuple[str, bytes]]:
    """SOP Instance UID -> (entry name, entry bytes) of every DICOM entry."""
    out = {}
    for name in archive.namelist():
        data = archive.read(name)
        if name != "DICOMDIR":
            out[pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID] = (name, data)
    return out


async def a_study(client: httpx.AsyncClient) -> tuple[str, str, list[pydicom.Dataset], list[bytes]]:
    study, ct, mr = generate_uid(), generate_uid(), generate_uid()
    datasets = [
        make_dataset(study=study, series=ct, patient_id="PID-7", InstanceNumber=1, SeriesNumber=2),
        make_dataset(study=study, series=ct, patient_id="PID-7", InstanceNumber=2, SeriesNumber=2),
        make_dataset(study=study, series=mr, patient_id="PID-7", modality="MR", InstanceNumber=1, SeriesNumber=3),
    ]
    blobs = [part10_bytes(ds) for ds in datasets]
    await store(client, *blobs)
    return study, ct, datasets, blobs


async def test_study_series_and_instance_as_zip_by_header_and_by_query(client: httpx.AsyncClient) -> None:
    study, ct, datasets, blobs = await a_study(client)
    expected = {ds.SOPInstanceUID: blob for ds, blob in zip(datasets, blobs, strict=True)}
    instance = datasets[1]
    for path, uids in [
        (f"/studies/{study}", [ds.SOPInstanceUID for ds in datasets]),
        (f"/studies/{study}/series/{ct}", [ds.SOPInstanceUID for ds in datasets[:2]]),
        (f"/studies/{study}/series/{ct}/instances/{instance.SOPInstanceUID}", [instance.SOPInstanceUID]),
    ]:
        for response in (
            await client.get(path, headers={"Accept": ZIP}),
            await client.get(path, params={"accept": ZIP}),
            # the query parameter overrides the header (PS3.18 §8.3.3.1)
            await client.get(path, params={"accept": ZIP}, headers={"Accept": "multipart/related"}),
        ):
            entries = by_uid(read_zip(response))
            assert sorted(entries) == sorted(uids)
            for uid, (_, data) in entries.items():
                assert data == expected[uid]  # as stored, byte for byte
            assert response.headers["content-disposition"].startswith("attachment; filename=")
            assert response.headers["content-disposition"].endswith('.zip"')


async def test_readable_names(client: httpx.AsyncClient) -> None:
    study, _, datasets, _ = await a_study(client)
    archive = read_zip(await client.get(f"/studies/{study}", headers={"Accept": ZIP}))
    assert sorted(archive.namelist()) == [
        "PID-7_20240102/2_CT/0001.dcm",
        "PID-7_20240102/2_CT/0002.dcm",
        "PID-7_20240102/3_MR/0001.dcm",
    ]


async def test_names_are_sanitised_and_unique(client: httpx.AsyncClient) -> None:
    study = generate_uid()
    one, two, three = generate_uid(), generate_uid(), generate_uid()
    hostile = "../../C:evil*?<>|"  # (a backslash would split the value: it is the VM separator)
    datasets = [
        # Two series with the same number and modality, and two instances with one number.
        make_dataset(study=study, series=one, patient_id=hostile, InstanceNumber=5, SeriesNumber=1),
        make_dataset(study=study, series=one, patient_id=hostile, InstanceNumber=5, SeriesNumber=1),
        make_dataset(study=study, series=two, patient_id=hostile, InstanceNumber=5, SeriesNumber=1),
        make_dataset(study=study, series=three, patient_id=hostile, modality="ct", InstanceNumber=5, SeriesNumber=1),
    ]
    await store(client, *(part10_bytes(ds) for ds in datasets))
    archive = read_zip(await client.get(f"/studies/{study}", params={"accept": ZIP}))
    names = archive.namelist()
    assert len({name.casefold() for name in names}) == 4
    for name in names:
        parts = name.split("/")
        assert len(parts) == 3
        assert not any(part in ("", ".", "..") or part.startswith(".") for part in parts)
        assert not any(char in name for char in '\\:*?<>|"')
    assert sorted(names) == [
        "C_evil_20240102/1_CT/0005.dcm",
        "C_evil_20240102/1_CT/0005_2.dcm",
        "C_evil_20240102/1_CT_2/0005.dcm",
        "C_evil_20240102/1_ct_3/0005.dcm",  # differs from 1_CT only in case: Windows would merge them
    ]


def test_safe_component() -> None:
    assert safe_component("..", fallback="x") == "x"
    assert safe_component(None, fallback="x") == "x"
    assert safe_component("a/b\\c:d", fallback="x") == "a_b_c_d"
    assert safe_component(" .hidden. ", fallback="x") == "hidden"
    assert safe_component("CON", fallback="x") == "_CON"
    assert safe_component("nul.txt", fallback="x") == "_nul.txt"
    assert safe_component("Müller^Jürgen", fallback="x") == "Müller^Jürgen"
    assert safe_component("a\x00b\nc", fallback="x") == "a_b_c"
    assert safe_component("x" * 100, fallback="y") == "x" * 64


async def test_zip_names_are_utf8(client: httpx.AsyncClient) -> None:
    ds = make_dataset(patient_id="Jürgen")
    await store(client, part10_bytes(ds))
    archive = read_zip(await client.get(f"/studies/{ds.StudyInstanceUID}", headers={"Accept": ZIP}))
    [info] = archive.infolist()
    assert info.filename.startswith("Jürgen_20240102/")
    assert info.flag_bits & 0x800


async def test_dicomdir_file_set(client: httpx.AsyncClient, tmp_path: Path) -> None:
    study, ct, datasets, blobs = await a_study(client)
    other = make_dataset(patient_id="PID-8", patient_name="Roe^Richard", InstanceNumber=4)
    await store(client, part10_bytes(other))
    response = await client.get(f"/studies/{study}", params={"accept": ZIP, "dicomdir": "true"})
    archive = read_zip(response)
    names = archive.namelist()
    assert names[-1] == "DICOMDIR"  # written last, from the records streamed before it
    assert sorted(names[:-1]) == [
        "DICOM/ST000001/SE000001/IM000001",
        "DICOM/ST000001/SE000001/IM000002",
        "DICOM/ST000001/SE000002/IM000001",
    ]
    archive.extractall(tmp_path)
    dicomdir = pydicom.dcmread(tmp_path / "DICOMDIR")
    assert dicomdir.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.1.3.10"
    records = dicomdir.DirectoryRecordSequence
    kinds = ["PATIENT", "STUDY", "SERIES", "IMAGE", "IMAGE", "SERIES", "IMAGE"]
    assert [r.DirectoryRecordType for r in records] == kinds
    # Every offset is the position of a record's item tag in the file (PS3.3 F.3.2.1).
    starts = {record.seq_item_tell: record for record in records}
    assert dicomdir.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity == records[0].seq_item_tell
    assert dicomdir.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity == records[0].seq_item_tell
    assert starts[records[2].OffsetOfTheNextDirectoryRecord] is records[5]  # second series
    assert starts[records[1].OffsetOfReferencedLowerLevelDirectoryEntity] is records[2]
    assert records[3].OffsetOfReferencedLowerLevelDirectoryEntity == 0
    expected = {ds.SOPInstanceUID: blob for ds, blob in zip(datasets, blobs, strict=True)}
    with file_set_of(tmp_path / "DICOMDIR") as file_set:
        assert len(file_set) == 3
        for instance in file_set:
            # Each record points at the file holding its instance (PS3.3 F.5: Referenced File ID).
            assert read_file(instance.path) == expected[instance.SOPInstanceUID]
            assert instance.ReferencedTransferSyntaxUIDInFile == ExplicitVRLittleEndian
            assert instance.PatientID == "PID-7"
            assert instance.StudyInstanceUID == study
            assert instance.InstanceNumber == pydicom.dcmread(instance.path).InstanceNumber
        assert sorted(instance.InstanceNumber for instance in file_set.find(SeriesInstanceUID=ct)) == [1, 2]
        assert file_set.find(SOPInstanceUID=other.SOPInstanceUID) == []  # another study: not in it


async def test_dicomdir_of_a_series_with_sparse_attributes(client: httpx.AsyncClient, tmp_path: Path) -> None:
    # No StudyID, no SeriesNumber, stored as Implicit VR: records still point at their files.
    ds = make_dataset(InstanceNumber=3)
    del ds.StudyID
    del ds.SeriesNumber
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    blob = part10_bytes(ds)
    await store(client, blob)
    path = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    read_zip(await client.get(path, params={"accept": ZIP, "dicomdir": "1"})).extractall(tmp_path)
    with file_set_of(tmp_path / "DICOMDIR") as file_set:
        [instance] = list(file_set)
        assert read_file(instance.path) == blob  # as stored: Implicit VR stays Implicit VR
        assert instance.ReferencedTransferSyntaxUIDInFile == ImplicitVRLittleEndian


async def test_unknown_study_is_404(client: httpx.AsyncClient) -> None:
    for request in (
        client.get(f"/studies/{generate_uid()}", headers={"Accept": ZIP}),
        client.get(f"/studies/{generate_uid()}/series/{generate_uid()}", params={"accept": ZIP}),
    ):
        r = await request
        assert r.status_code == 404
        assert "no " in r.text


async def test_not_acceptable_and_bad_parameters(client: httpx.AsyncClient) -> None:
    study, _, _, _ = await a_study(client)
    r = await client.get(f"/studies/{study}", headers={"Accept": "image/png"})
    assert r.status_code == 406
    r = await client.get(f"/studies/{study}", params={"accept": "text/html"}, headers={"Accept": ZIP})
    assert r.status_code == 406  # the parameter overrides the header
    # Instances go in as stored: a zip in another transfer syntax cannot be made.
    r = await client.get(f"/studies/{study}", headers={"Accept": f"{ZIP}; transfer-syntax=1.2.840.10008.1.2.4.50"})
    assert r.status_code == 406
    r = await client.get(f"/studies/{study}", headers={"Accept": f"{ZIP}; transfer-syntax={ExplicitVRLittleEndian}"})
    assert r.status_code == 200
    r = await client.get(f"/studies/{study}", params={"accept": ZIP, "dicomdir": "maybe"})
    assert r.status_code == 400
    assert "dicomdir" in r.text


async def test_multipart_stays_the_default(client: httpx.AsyncClient) -> None:
    study, _, _, _ = await a_study(client)
    for accept in (None, "*/*", 'multipart/related; type="application/dicom"', f"{ZIP}; q=0.5, multipart/related"):
        headers = {} if accept is None else {"Accept": accept}
        r = await client.get(f"/studies/{study}", headers=headers)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("multipart/related"), accept
    r = await client.get(f"/studies/{study}", headers={"Accept": f"multipart/related; q=0.5, {ZIP}"})
    assert r.headers["content-type"] == ZIP


class GatedBlobs:
    """A blob store that counts reads and holds back every blob after the first until released."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.opened = 0
        self.release = threading.Event()

    def get(self, key: str, /, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return self._get(key, start, end)

    async def _get(self, key: str, start: int, end: int | None) -> AsyncIterator[bytes]:
        self.opened += 1
        if self.opened > 1:
            while not self.release.is_set():  # the server runs on its own thread's event loop
                await _sleep()
        async for chunk in self.inner.get(key, start=start, end=end):  # type: ignore[attr-defined]
            yield chunk

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def put(self, key: str, chunks: AsyncIterable[bytes | memoryview], /, *, durable: bool = True) -> BlobInfo:
        return await self.inner.put(key, chunks, durable=durable)  # type: ignore[attr-defined,no-any-return]

    async def delete(self, keys: Sequence[str], /) -> None:
        await self.inner.delete(keys)  # type: ignore[attr-defined]


async def _sleep() -> None:
    import anyio

    await anyio.sleep(0.005)


async def test_the_archive_streams(make_kit: Callable[..., DicomWeb]) -> None:
    kit = make_kit()
    # Instances over 64 KB: the writer joins smaller pieces before it hands them on.
    study = generate_uid()
    blobs = [part10_bytes(make_dataset(study=study, rows=256, columns=256)) for _ in range(3)]
    gate = GatedBlobs(kit.blobs)
    kit.blobs = gate  # type: ignore[assignment]
    with LiveServer(host_app(kit)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            gate.release.set()
            await store(client, *blobs)
            gate.release.clear()
            gate.opened = 0
            async with client.stream("GET", f"/studies/{study}", headers={"Accept": ZIP}) as response:
                assert response.status_code == 200
                stream = response.aiter_raw()
                first = await anext(stream)
                # The first entry arrived while the second blob has not been read yet.
                assert first[:4] == b"PK\x03\x04"
                deadline = time.monotonic() + 1
                while gate.opened < 2 and time.monotonic() < deadline:
                    await _sleep()
                assert gate.opened == 2  # the second blob is being waited for, not the whole study
                gate.release.set()
                body = first + b"".join([chunk async for chunk in stream])
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.testzip() is None
    assert sorted(by_uid(archive)) == sorted(pydicom.dcmread(io.BytesIO(b)).SOPInstanceUID for b in blobs)


@pytest.mark.parametrize(("name", "kind"), [("test-SR.dcm", "SR DOCUMENT"), ("rtplan.dcm", "RT PLAN")])
async def test_dicomdir_records_of_other_objects(
    client: httpx.AsyncClient, tmp_path: Path, name: str, kind: str
) -> None:
    blob = read_file(str(PYDICOM_TEST_FILES / name))
    await store(client, blob)
    ds = pydicom.dcmread(io.BytesIO(blob))
    response = await client.get(f"/studies/{ds.StudyInstanceUID}", params={"accept": ZIP, "dicomdir": "true"})
    read_zip(response).extractall(tmp_path)
    dicomdir = pydicom.dcmread(tmp_path / "DICOMDIR")
    assert [r.DirectoryRecordType for r in dicomdir.DirectoryRecordSequence] == ["PATIENT", "STUDY", "SERIES", kind]
    with file_set_of(tmp_path / "DICOMDIR") as file_set:
        [instance] = list(file_set)
        assert instance.SOPInstanceUID == ds.SOPInstanceUID
        assert read_file(instance.path) == blob
