"""The DICOMweb tutorial (../shared/reference/dicomweb-tutorial.md), request for request, against a
live uvicorn server, with `requests` as the tutorial uses it; then the real client dicomweb-client."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid

from dicomweb_kit.testing import make_dataset, part10_bytes

NS = {"d": "http://dicom.nema.org/PS3.19/models/NativeDICOM"}


def tutorial_corpus() -> list[pydicom.Dataset]:
    """Three instances like the tutorial's: two of patient PATCHWORK^QUILT (one study), one other."""
    study, series = generate_uid(), generate_uid()
    return [
        make_dataset(study=study, series=series, patient_name="PATCHWORK^QUILT", patient_id="PATCH1", InstanceNumber=1),
        make_dataset(study=study, series=series, patient_name="PATCHWORK^QUILT", patient_id="PATCH1", InstanceNumber=2),
        make_dataset(patient_name="SMITH^JOHN", patient_id="SMITH1"),
    ]


def construct_stow_message(url: str, content: bytes) -> requests.Response:
    # The tutorial's constructStowMessage, with its `content` variable bound to the file's bytes.
    body = bytearray()
    body += bytearray("--MESSAGEBOUNDARY\r\n", "ascii")
    body += bytearray("Content-Length: " + str(len(content)) + "\r\n", "ascii")
    body += bytearray("Content-Type: application/dicom\r\n\r\n", "ascii")
    body += content
    body += bytearray("\r\n", "ascii")
    body += bytearray("--MESSAGEBOUNDARY--", "ascii")
    headers = {
        "Content-Type": "multipart/related; type=application/dicom; boundary=MESSAGEBOUNDARY",
        "Accept": "application/dicom+xml",
    }
    return requests.post(url, data=body, headers=headers)


def xml_values(document: bytes, tag: str) -> list[str]:
    root = ET.fromstring(document)
    return [v.text or "" for v in root.iterfind(f".//d:DicomAttribute[@tag='{tag}']/d:Value", NS)]


def test_the_tutorial_flow(live_server) -> None:
    base = live_server.url
    corpus = tutorial_corpus()

    # STOW-RS: the hand-built multipart body, answered in XML.
    for ds in corpus:
        r = construct_stow_message(base + "/studies", part10_bytes(ds))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/dicom+xml")
        assert xml_values(r.content, "00081155") == [ds.SOPInstanceUID]  # ReferencedSOPSequence item
        assert xml_values(r.content, "00081190")[0] == f"{base}/studies/{ds.StudyInstanceUID}"

    # QIDO-RS: all studies in XML (multipart/related, one NativeDicomModel per study).
    r = requests.request("GET", base + "/studies/", data="", headers={"Accept": "application/dicom+xml"}, params={})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("multipart/related")
    assert 'type="application/dicom+xml"' in r.headers["content-type"]
    assert r.text.count("<NativeDicomModel") == 2

    # All studies in JSON.
    r = requests.request("GET", base + "/studies/", data="", headers={"Accept": "application/json"}, params={})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    studies = json.loads(r.text)
    assert {s["0020000D"]["Value"][0] for s in studies} == {ds.StudyInstanceUID for ds in corpus}

    # Only patients named Patches, then the study structure by following RetrieveURL.
    headers = {"Accept": "application/json"}
    r = requests.request("GET", base + "/studies/", data="", headers=headers, params={"PatientName": "*PATCH*"})
    json_response = json.loads(r.text)
    assert [s["00100010"]["Value"][0]["Alphabetic"] for s in json_response] == ["PATCHWORK^QUILT"]
    assert json_response[0]["00201208"]["Value"] == [2]

    url = json_response[0]["00081190"]["Value"][0] + "/series"
    r = requests.request("GET", url, data="", headers=headers, params={})
    series = json.loads(r.text)
    assert [s["0020000E"]["Value"][0] for s in series] == [corpus[0].SeriesInstanceUID]
    assert series[0]["00201209"]["Value"] == [2]

    url = json_response[0]["00081190"]["Value"][0] + "/instances"
    r = requests.request("GET", url, data="", headers=headers, params={})
    instances = json.loads(r.text)
    assert sorted(i["00080018"]["Value"][0] for i in instances) == sorted(ds.SOPInstanceUID for ds in corpus[:2])

    # WADO-RS: retrieve one instance by the URL the tutorial shows.
    instance_url = instances[0]["00081190"]["Value"][0]
    assert instance_url.startswith(f"{base}/studies/{corpus[0].StudyInstanceUID}/series/")
    r = requests.get(instance_url)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("multipart/related")
    stored = {ds.SOPInstanceUID: part10_bytes(ds) for ds in corpus}
    assert stored[instances[0]["00080018"]["Value"][0]] in r.content


def test_dicomweb_client(live_server) -> None:
    client = DICOMwebClient(url=live_server.url)
    corpus = tutorial_corpus()
    response = client.store_instances(datasets=corpus)
    assert len(response.ReferencedSOPSequence) == 3

    studies = client.search_for_studies(search_filters={"PatientName": "*PATCH*"})
    assert [s["0020000D"]["Value"][0] for s in studies] == [corpus[0].StudyInstanceUID]
    series = client.search_for_series(corpus[0].StudyInstanceUID)
    assert [s["0020000E"]["Value"][0] for s in series] == [corpus[0].SeriesInstanceUID]
    instances = client.search_for_instances(corpus[0].StudyInstanceUID, corpus[0].SeriesInstanceUID)
    assert len(instances) == 2
    assert len(client.search_for_instances()) == 3

    ds = client.retrieve_instance(corpus[2].StudyInstanceUID, corpus[2].SeriesInstanceUID, corpus[2].SOPInstanceUID)
    assert ds.SOPInstanceUID == corpus[2].SOPInstanceUID
    assert ds.PixelData == corpus[2].PixelData

    metadata = client.retrieve_series_metadata(corpus[0].StudyInstanceUID, corpus[0].SeriesInstanceUID)
    assert sorted(m["00080018"]["Value"][0] for m in metadata) == sorted(d.SOPInstanceUID for d in corpus[:2])
    pixel = metadata[0]["7FE00010"]
    # dicomweb-client sends `Host: localhost` without the port; URLs follow the Host header (RFC 9110 §7.2).
    assert urlsplit(pixel["BulkDataURI"]).path.startswith("/dicom-web/studies/")
    assert pydicom.Dataset.from_json(metadata[0], bulk_data_uri_handler=lambda *_: b"").PatientName == "PATCHWORK^QUILT"


@pytest.mark.parametrize("accept", ["application/dicom+json", "application/json", "*/*"])
def test_dicomweb_client_search_accepts(live_server, accept) -> None:
    ds = tutorial_corpus()[2]
    DICOMwebClient(url=live_server.url).store_instances(datasets=[ds])
    r = requests.get(live_server.url + "/studies", headers={"Accept": accept}, params={"PatientID": "SMITH1"})
    assert r.status_code == 200
    assert r.json()[0]["00100020"]["Value"] == ["SMITH1"]
