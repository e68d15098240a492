"""QIDO-RS over HTTP (PS3.18 §10.6)."""

from __future__ import annotations

import httpx
import pytest
from pydicom.uid import generate_uid

from dicomweb_kit.testing import make_dataset, part10_bytes

pytestmark = pytest.mark.anyio


async def store(client: httpx.AsyncClient, *datasets) -> None:
    boundary = "XyZ"
    body = (
        b"".join(b"--XyZ\r\nContent-Type: application/dicom\r\n\r\n" + part10_bytes(ds) + b"\r\n" for ds in datasets)
        + b"--XyZ--"
    )
    r = await client.post("/studies", content=body, headers={"Content-Type": f"multipart/related; boundary={boundary}"})
    assert r.status_code == 200, r.text


@pytest.fixture
async def archive(client: httpx.AsyncClient) -> list:
    study = generate_uid()
    series = generate_uid()
    datasets = [
        make_dataset(study=study, series=series, patient_name="PATCHWORK^QUILT", patient_id="P1", InstanceNumber=i)
        for i in range(1, 4)
    ] + [
        make_dataset(patient_name="Patchett^Anna", patient_id="P2", modality="MR", study_date="20210315"),
        make_dataset(patient_name="SMITH^JOHN", patient_id="P3", study_date="20190101"),
    ]
    await store(client, *datasets)
    return datasets


def uids(results: list[dict], tag: str = "0020000D") -> list[str]:
    return [r[tag]["Value"][0] for r in results]


async def test_studies_default_attributes(client: httpx.AsyncClient, archive: list) -> None:
    r = await client.get("/studies")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/dicom+json"
    studies = r.json()
    assert len(studies) == 3
    first = studies[0]
    assert first["00100010"]["Value"] == [{"Alphabetic": "PATCHWORK^QUILT"}]
    assert first["00201206"]["Value"] == [1]  # NumberOfStudyRelatedSeries
    assert first["00201208"]["Value"] == [3]  # NumberOfStudyRelatedInstances
    assert first["00080061"]["Value"] == ["CT"]
    assert first["00081190"]["Value"] == [f"http://testserver/dicom-web/studies/{archive[0].StudyInstanceUID}"]
    assert list(first) == sorted(first)


async def test_wildcard_and_case(client: httpx.AsyncClient, archive: list) -> None:
    studies = (await client.get("/studies", params={"PatientName": "*PATCH*"})).json()
    assert uids(studies) == [archive[0].StudyInstanceUID, archive[3].StudyInstanceUID]


async def test_percent_encoded_values(client: httpx.AsyncClient, archive: list) -> None:
    r = await client.get("/studies?PatientName=Patchett%5EAnna")
    assert uids(r.json()) == [archive[3].StudyInstanceUID]


async def test_tag_keys_and_includefield(client: httpx.AsyncClient, archive: list) -> None:
    r = await client.get("/studies", params={"00100020": "P2", "includefield": "00080070,StudyDescription"})
    assert uids(r.json()) == [archive[3].StudyInstanceUID]


async def test_date_range(client: httpx.AsyncClient, archive: list) -> None:
    r = await client.get("/studies", params={"StudyDate": "20200101-"})
    assert uids(r.json()) == [archive[0].StudyInstanceUID, archive[3].StudyInstanceUID]


async def test_uid_list(client: httpx.AsyncClient, archive: list) -> None:
    wanted = f"{archive[3].StudyInstanceUID},{archive[4].StudyInstanceUID}"
    r = await client.get("/studies", params={"StudyInstanceUID": wanted})
    assert uids(r.json()) == [archive[3].StudyInstanceUID, archive[4].StudyInstanceUID]


async def test_series_and_instances_of_a_study(client: httpx.AsyncClient, archive: list) -> None:
    study = archive[0].StudyInstanceUID
    series = (await client.get(f"/studies/{study}/series")).json()
    assert uids(series, "0020000E") == [archive[0].SeriesInstanceUID]
    assert series[0]["00201209"]["Value"] == [3]
    instances = (await client.get(f"/studies/{study}/series/{archive[0].SeriesInstanceUID}/instances")).json()
    assert uids(instances, "00080018") == [ds.SOPInstanceUID for ds in archive[:3]]
    assert (await client.get("/instances", params={"Modality": "MR"})).json()[0]["00080018"]["Value"] == [
        archive[3].SOPInstanceUID
    ]


async def test_limit_offset_and_warning(client: httpx.AsyncClient, archive: list) -> None:
    pages = []
    for offset in range(3):
        r = await client.get("/studies", params={"limit": "1", "offset": str(offset)})
        pages += uids(r.json())
    assert pages == [archive[0].StudyInstanceUID, archive[3].StudyInstanceUID, archive[4].StudyInstanceUID]


async def test_orderby_newest_first(client: httpx.AsyncClient, archive: list) -> None:
    r = await client.get("/studies?orderby=-StudyDate")
    assert r.status_code == 200
    newest_first = [archive[0].StudyInstanceUID, archive[3].StudyInstanceUID, archive[4].StudyInstanceUID]
    assert uids(r.json()) == newest_first  # 20240102, 20210315, 20190101
    assert uids((await client.get("/studies", params={"orderby": "StudyDate"})).json()) == newest_first[::-1]
    pages = []
    for offset in range(3):
        r = await client.get("/studies", params={"orderby": "-StudyDate", "limit": "1", "offset": str(offset)})
        pages += uids(r.json())
    assert pages == newest_first


async def test_orderby_several_keys_and_levels(client: httpx.AsyncClient, archive: list) -> None:
    r = await client.get("/studies", params=[("PatientName", "*PATCH*"), ("orderby", "-Modality,PatientID")])
    assert uids(r.json()) == [archive[3].StudyInstanceUID, archive[0].StudyInstanceUID]  # MR before CT
    study, series = archive[0].StudyInstanceUID, archive[0].SeriesInstanceUID
    r = await client.get(f"/studies/{study}/series/{series}/instances", params={"orderby": "-InstanceNumber"})
    assert uids(r.json(), "00080018") == [ds.SOPInstanceUID for ds in archive[2::-1]]


async def test_no_match_is_200_and_empty(client: httpx.AsyncClient, archive: list) -> None:
    # CP-2473: an empty result is 200 with an empty array (no longer 204).
    r = await client.get("/studies", params={"PatientID": "nobody"})
    assert (r.status_code, r.json()) == (200, [])


async def test_xml_multipart(client: httpx.AsyncClient, archive: list) -> None:
    for accept in ('multipart/related; type="application/dicom+xml"', "application/dicom+xml"):
        r = await client.get("/studies", headers={"Accept": accept})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith('multipart/related; type="application/dicom+xml"')
        assert r.text.count("<NativeDicomModel") == 3


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"NoSuchAttribute": "x"}, 400),
        ({"limit": "-1"}, 400),
        ({"offset": "abc"}, 400),
        ({"StudyDate": "2020-13-45"}, 400),
        ({"StudyInstanceUID": "1.2.abc"}, 400),
        ({"fuzzymatching": "maybe"}, 400),
        ({"orderby": "Nope"}, 400),
        ({"orderby": "-PixelData"}, 400),
    ],
)
async def test_bad_queries_are_400_naming_the_parameter(client: httpx.AsyncClient, params: dict, status: int) -> None:
    r = await client.get("/studies", params=params)
    assert r.status_code == status
    assert next(iter(params)) in r.text


async def test_text_html_is_406(client: httpx.AsyncClient) -> None:
    assert (await client.get("/studies", headers={"Accept": "text/html"})).status_code == 406


async def test_trailing_slash(client: httpx.AsyncClient, archive: list) -> None:
    assert len((await client.get("/studies/")).json()) == 3


async def test_sequence_matching(client: httpx.AsyncClient) -> None:
    from pydicom.dataset import Dataset

    def request(procedure_id: str) -> list[Dataset]:
        item = Dataset()
        item.RequestedProcedureID = procedure_id
        item.ScheduledProcedureStepID = "SPS-" + procedure_id
        return [item]

    wanted = make_dataset(RequestAttributesSequence=request("RP-7"))
    other = make_dataset(RequestAttributesSequence=request("RP-8"))
    await store(client, wanted, other)
    r = await client.get("/series", params={"RequestAttributesSequence.RequestedProcedureID": "RP-7"})
    assert r.status_code == 200
    assert uids(r.json(), "0020000E") == [wanted.SeriesInstanceUID]
    r = await client.get("/series", params={"00400275.00401001": "RP-8"})  # by tags
    assert uids(r.json(), "0020000E") == [other.SeriesInstanceUID]


async def test_optional_matching_not_performed_is_said_in_a_warning(client: httpx.AsyncClient, archive: list) -> None:
    r = await client.get("/studies", params={"multiplevaluematching": "true", "emptyvaluematching": "true"})
    assert r.status_code == 200
    warning = r.headers["warning"]
    assert "299 http://testserver/dicom-web: The multiplevaluematching parameter is not supported." in warning
    assert "Multiple Value Matching has not been performed." in warning
    assert "Empty Value Matching has not been performed." in warning
    plain = await client.get("/studies", params={"multiplevaluematching": "false"})
    assert "warning" not in plain.headers
    assert (await client.get("/studies", params={"emptyvaluematching": "maybe"})).status_code == 400
