"""DICOM JSON Model codec (PS3.18 Annex F): parity with pydicom, round trips, and the rules."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence

from dicomweb_kit.codecs.dicom_json import (
    dataset_to_json_dict,
    decode,
    encode,
    json_dict_to_dataset,
)
from dicomweb_kit.errors import InvalidRequest

DATA_DIR = Path(pydicom.data.__file__).parent
HUGE = 1 << 40


def _bundled_files() -> list[Path]:
    """Every local pydicom test file that may be DICOM: *.dcm and extension-less files."""
    files = [
        path
        for folder in ("test_files", "charset_files")
        for path in sorted((DATA_DIR / folder).rglob("*"))
        if path.is_file() and path.suffix in ("", ".dcm") and path.name != "README"
    ]
    assert len(files) > 150
    return files


BUNDLED = _bundled_files()


def _read(path: Path) -> Dataset:
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:
        if path.suffix != ".dcm":
            pytest.skip(f"{path.name}: not a DICOM file ({path.suffix or 'no extension'})")
        return pydicom.dcmread(path, force=True)  # *.dcm without the PS3.10 preamble
    except Exception as exc:  # pragma: no cover - depends on the bundled files
        pytest.skip(f"{path.name}: dcmread fails: {exc}")


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(DATA_DIR)) for p in paths]


def _normalise_pydicom(obj: dict[str, Any]) -> dict[str, Any]:
    """Apply exactly the documented differences ("Differences from pydicom") to pydicom's output."""
    out: dict[str, Any] = {}
    for key, attr in obj.items():
        tag = int(key, 16)
        if not tag & 0xFFFF or tag >> 16 == 0x0002:  # 1, 2: group length, file meta
            continue
        attr = dict(attr)
        values = attr.get("Value")
        if attr["vr"] == "SQ":
            if values:
                attr["Value"] = [_normalise_pydicom(item) for item in values]
            else:  # 3: empty sequence has no Value
                attr.pop("Value", None)
        elif attr["vr"] == "PN" and values:  # 5: only non-empty component groups
            attr["Value"] = [{g: c for g, c in v.items() if c} or None for v in values]
        elif values and len(values) > 1:  # 4: empty value of a multi-valued attribute is null
            attr["Value"] = [None if v == "" else v for v in values]
        out[key] = attr
    return out


def _assert_plain_types(obj: dict[str, Any]) -> None:
    """Only plain JSON types (no pydicom str/int subclasses such as VR, UID, IS, PersonName)."""
    for key, attr in obj.items():
        assert type(key) is str and type(attr["vr"]) is str
        for value in attr.get("Value", []):
            if attr["vr"] == "SQ":
                _assert_plain_types(value)
            else:
                assert type(value) in (str, int, float, dict, type(None)), (key, type(value))


# --------------------------------------------------------------------------- parity, round trip


@pytest.mark.parametrize("path", BUNDLED, ids=_ids(BUNDLED))
def test_parity_with_pydicom(path: Path) -> None:
    ds = _read(path)
    ours = dataset_to_json_dict(ds, bulk_data_threshold=HUGE)  # first: exercises the raw path
    if path.name == "badVR.dcm":
        # Difference 7: IS/DS values that are not numbers stay strings; pydicom raises.
        with pytest.raises(ValueError):
            ds.to_json_dict(bulk_data_threshold=HUGE)
        return
    expected = _normalise_pydicom(ds.to_json_dict(bulk_data_threshold=HUGE))
    assert ours == expected
    _assert_plain_types(ours)
    assert list(ours) == sorted(ours)
    # Now every element is a converted DataElement: the non-raw path must agree.
    assert dataset_to_json_dict(ds, bulk_data_threshold=HUGE) == ours


@pytest.mark.parametrize("path", BUNDLED, ids=_ids(BUNDLED))
def test_round_trip_json_dataset_json(path: Path) -> None:
    ds = _read(path)
    if path.name == "badVR.dcm":
        pytest.skip("an IS of '1A' cannot become a pydicom data element again (difference 7)")
    obj = dataset_to_json_dict(ds, bulk_data_threshold=HUGE)
    again = dataset_to_json_dict(json_dict_to_dataset(decode(encode(obj))))
    assert again == obj


def test_bad_is_value_is_kept_as_a_string() -> None:
    ds = pydicom.dcmread(DATA_DIR / "test_files" / "badVR.dcm")
    values = [e["Value"] for e in dataset_to_json_dict(ds).values() if e["vr"] == "IS" and "Value" in e]
    assert ["1A"] in values


# --------------------------------------------------------------------------- character sets


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("chrH31.dcm", {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}),
        ("chrJapMulti.dcm", {"Alphabetic": "やまだ^たろう"}),
        ("chrJapMultiExplicitIR6.dcm", {"Alphabetic": "やまだ^たろう"}),
        ("chrKoreanMulti.dcm", {"Alphabetic": "김희중"}),
        ("chrX1.dcm", {"Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小東"}),
        ("chrGreek.dcm", {"Alphabetic": "Διονυσιος"}),
        ("chrRuss.dcm", {"Alphabetic": "Люкceмбypг"}),
    ],
)
def test_specific_character_set_decoded_to_unicode(name: str, expected: dict[str, str]) -> None:
    obj = dataset_to_json_dict(pydicom.dcmread(DATA_DIR / "charset_files" / name))
    assert obj["00100010"]["Value"] == [expected]
    # JSON is UTF-8 (RFC 8259); the decoded text survives encode/decode.
    assert decode(encode(obj))["00100010"]["Value"] == [expected]


def test_iso_2022_japanese_text_in_other_vrs() -> None:
    obj = dataset_to_json_dict(pydicom.dcmread(DATA_DIR / "charset_files" / "chrH32.dcm"))
    assert obj["00100010"]["Value"] == [
        {"Alphabetic": "ﾔﾏﾀﾞ^ﾀﾛｳ", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
    ]


# --------------------------------------------------------------------------- value rules


def _one(vr: str, value: Any, tag: int = 0x00181000) -> dict[str, Any]:
    ds = Dataset()
    ds.add_new(tag, vr, value)
    return dataset_to_json_dict(ds)[f"{tag:08X}"]


def test_person_name_component_groups() -> None:
    # PS3.18 §F.2.2: the non-empty component groups, split on "=".
    assert _one("PN", "Doe^Jane") == {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}
    assert _one("PN", "A^B=C^D=E^F")["Value"] == [{"Alphabetic": "A^B", "Ideographic": "C^D", "Phonetic": "E^F"}]
    assert _one("PN", "=C^D")["Value"] == [{"Ideographic": "C^D"}]
    assert _one("PN", ["A^B", "", "C"])["Value"] == [{"Alphabetic": "A^B"}, None, {"Alphabetic": "C"}]


def test_numbers_tags_and_empty_values() -> None:
    assert _one("IS", "42") == {"vr": "IS", "Value": [42]}
    assert _one("DS", ["1.5", "2"]) == {"vr": "DS", "Value": [1.5, 2.0]}
    assert _one("US", [1, 2]) == {"vr": "US", "Value": [1, 2]}
    assert _one("FD", 0.25) == {"vr": "FD", "Value": [0.25]}
    assert _one("AT", [0x00100010, 0x7FE00010]) == {"vr": "AT", "Value": ["00100010", "7FE00010"]}
    assert _one("CS", ["A", "", "B"]) == {"vr": "CS", "Value": ["A", None, "B"]}  # PS3.18 §F.2.5
    for vr in ("CS", "PN", "IS", "DS", "US", "OB", "LO", "UT"):
        assert _one(vr, None) == {"vr": vr}  # present but empty: no Value
    assert _one("SQ", []) == {"vr": "SQ"}


def test_nan_encodes_as_null() -> None:
    obj = _one("FD", math.nan)
    assert math.isnan(obj["Value"][0])
    assert decode(encode(obj)) == {"vr": "FD", "Value": [None]}


def test_group_length_and_file_meta_excluded_private_kept() -> None:
    ds = Dataset()
    ds.add_new(0x00080000, "UL", 10)
    ds.add_new(0x00020010, "UI", "1.2.840.10008.1.2.1")
    ds.add_new(0x00100020, "LO", "ID1")
    ds.add_new(0x00090010, "LO", "ACME 1.0")
    ds.add_new(0x00091001, "LO", "secret")
    ds.add_new(0x00091002, "UN", b"\x01\x02")
    assert dataset_to_json_dict(ds) == {
        "00091001": {"vr": "LO", "Value": ["secret"]},
        "00091002": {"vr": "UN", "InlineBinary": "AQI="},
        "00090010": {"vr": "LO", "Value": ["ACME 1.0"]},
        "00100020": {"vr": "LO", "Value": ["ID1"]},
    }
    assert list(dataset_to_json_dict(ds)) == ["00090010", "00091001", "00091002", "00100020"]


def test_private_sequence_kept() -> None:
    obj = dataset_to_json_dict(pydicom.dcmread(DATA_DIR / "test_files" / "nested_priv_SQ.dcm"))
    inner = obj["00010001"]["Value"][0]
    assert inner["00010002"] == {"vr": "UN", "InlineBinary": base64.b64encode(b"Nested SQ").decode()}
    assert inner["00010001"]["Value"][0]["00010001"]["vr"] == "UN"


# --------------------------------------------------------------------------- bulk data


def _bulk_dataset() -> Dataset:
    ds = Dataset()
    ds.PatientID = "P"
    item = Dataset()
    item.add_new(0x00181072, "OB", b"x" * 100)  # nested, large
    item.add_new(0x00181073, "OB", b"y" * 4)  # nested, small
    ds.add_new(0x00540016, "SQ", Sequence([Dataset(), item]))
    ds.add_new(0x00282000, "OB", b"z" * 8)  # ICC profile, small
    ds.add_new(0x7FE00001, "OV", b"\0" * 8)  # top-level 7FE0 group
    ds.add_new(0x7FE00010, "OW", b"\1\2" * 2)  # Pixel Data, small
    return ds


def test_bulk_data_uri_paths_and_policy() -> None:
    paths: list[str] = []

    def factory(path: str) -> str:
        paths.append(path)
        return f"https://pacs/bulk/{path}"

    obj = dataset_to_json_dict(_bulk_dataset(), bulk_data_uri=factory, bulk_data_threshold=16)
    seq = obj["00540016"]["Value"]
    assert seq[0] == {}  # PS3.18 §F.2.2: empty items are empty objects
    assert seq[1]["00181072"] == {"vr": "OB", "BulkDataURI": "https://pacs/bulk/00540016/1/00181072"}
    assert seq[1]["00181073"] == {"vr": "OB", "InlineBinary": base64.b64encode(b"yyyy").decode()}
    assert obj["00282000"]["vr"] == "OB" and "InlineBinary" in obj["00282000"]
    assert obj["7FE00001"] == {"vr": "OV", "BulkDataURI": "https://pacs/bulk/7FE00001"}
    assert obj["7FE00010"] == {"vr": "OW", "BulkDataURI": "https://pacs/bulk/7FE00010"}
    assert sorted(paths) == ["00540016/1/00181072", "7FE00001", "7FE00010"]


def test_without_factory_everything_is_inline() -> None:
    obj = dataset_to_json_dict(_bulk_dataset(), bulk_data_threshold=0)
    assert obj["7FE00010"] == {"vr": "OW", "InlineBinary": "AQIBAg=="}


def test_encapsulated_pixel_data_is_bulk_with_factory() -> None:
    ds = pydicom.dcmread(DATA_DIR / "test_files" / "JPEG2000.dcm")
    obj = dataset_to_json_dict(ds, bulk_data_uri=lambda p: "bulk:" + p, bulk_data_threshold=HUGE)
    assert obj["7FE00010"] == {"vr": "OB", "BulkDataURI": "bulk:7FE00010"}


# --------------------------------------------------------------------------- JSON -> dataset


def test_json_dict_to_dataset_values() -> None:
    obj = {
        "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小東"}]},
        "00200013": {"vr": "IS", "Value": [7]},
        "00280030": {"vr": "DS", "Value": ["0.5", 0.25]},  # JSON String allowed (Table F.2.3-1)
        "00209165": {"vr": "AT", "Value": ["00100010"]},
        "00282000": {"vr": "OB", "InlineBinary": "AQI="},
        "7FE00010": {"vr": "OW", "BulkDataURI": "https://x/bulk"},
    }
    ds = json_dict_to_dataset(obj)
    assert str(ds.PatientName) == "Wang^XiaoDong=王^小東"
    assert ds.InstanceNumber == 7
    assert ds.PixelSpacing == [0.5, 0.25]
    assert ds[0x00209165].value == 0x00100010
    assert ds[0x00282000].value == b"\x01\x02"
    assert 0x7FE00010 not in ds  # BulkDataURI without a loader: left out
    loaded = json_dict_to_dataset(obj, bulk_data_loader=lambda uri: b"\0\1")
    assert loaded[0x7FE00010].value == b"\0\1"


@pytest.mark.parametrize(
    "obj",
    [
        {"0010001": {"vr": "PN"}},
        {"0010001G": {"vr": "PN"}},
        {"00100010": {"vr": "XX"}},
        {"00100010": {"Value": ["x"]}},
        {"00100010": ["x"]},
        {"00100020": {"vr": "LO", "Value": "x"}},
        {"00100020": {"vr": "LO", "Value": [1]}},
        {"00100010": {"vr": "PN", "Value": ["Doe"]}},
        {"00280010": {"vr": "US", "Value": [None]}},
        {"00282000": {"vr": "OB", "InlineBinary": "***"}},
        {"00282000": {"vr": "OB", "Value": ["AQI="]}},
        {"00282000": {"vr": "OB", "InlineBinary": "AQI=", "BulkDataURI": "x"}},
        {"00081115": {"vr": "SQ", "Value": [["not", "an", "object"]]}},
    ],
)
def test_json_dict_to_dataset_rejects_malformed(obj: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        json_dict_to_dataset(obj)


def test_decode_rejects_malformed_json() -> None:
    with pytest.raises(InvalidRequest):
        decode(b'{"00100010": ')
    assert decode('{"a": [1]}') == {"a": [1]}
    assert encode({"b": [None, 1.5]}) == b'{"b":[null,1.5]}'
