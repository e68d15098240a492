"""The lean header walk (codecs/header_walk.py) against the pydicom path it replaces in ingest.

For every Part 10 file pydicom ships, the synthetic corpora and generated edge cases, the record
``_record_from`` builds without pydicom (``with_dataset=False``) is exactly the one the pydicom
path builds: the same stored JSON bytes, UIDs, transfer syntax, pixel layout and header facts,
or the same rejection. Where the walk declines, the pydicom path runs, so both give the same
outcome; the tests also check that the walk does take the common cases.
"""

from __future__ import annotations

import io
import os
import random
import struct
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import msgspec
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from dicomweb_kit.codecs.header_walk import walk_header
from dicomweb_kit.codecs.part10 import HeaderIncomplete
from dicomweb_kit.errors import InstanceRejected
from dicomweb_kit.services import ingest
from dicomweb_kit.testing import make_dataset, part10_bytes

PYDICOM_DATA = Path(pydicom.__file__).parent / "data"
MAKE_CORPUS = Path(os.environ.get("DICOMWEB_KIT_MAKE_CORPUS", "/work/shared/corpus/make_corpus.py"))
THRESHOLDS = (1024, 8)  # the default, and one that sends short binary values to BulkDataURIs
PREFIX_LIMIT = 4 << 20  # Settings.header_prefix_bytes


# --------------------------------------------------------------------------- the two paths


def _tee(data: bytes) -> ingest._PrefixTee:
    """What STOW-RS keeps of ``data`` streamed in 64 KiB chunks: the prefix and the pixel scan."""

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(data), 1 << 16):
            yield data[at : at + (1 << 16)]

    async def drain() -> ingest._PrefixTee:
        tee = ingest._PrefixTee(chunks(), PREFIX_LIMIT, None)
        async for _chunk in tee:
            pass
        return tee

    return anyio.run(drain)


def _comparable(result: tuple[Any, Any]) -> tuple[Any, ...]:
    record, header = result
    return (
        record.study_uid,
        record.series_uid,
        record.instance_uid,
        record.sop_class_uid,
        record.transfer_syntax_uid,
        record.blob_key,
        record.size,
        bytes(record.metadata),  # the stored and served JSON, byte for byte
        msgspec.json.encode(record.attributes),
        record.pixel_layout,
        header.transfer_syntax_uid,
        header.pixel_data_vr,
        header.header_length,
    )


def _outcome(call: Callable[[], tuple[Any, Any]]) -> tuple[Any, ...]:
    try:
        return _comparable(call())
    except InstanceRejected as exc:
        return ("rejected", exc.message, exc.failure_reason, exc.sop_class_uid, exc.sop_instance_uid)
    except HeaderIncomplete:
        return ("incomplete",)
    except Exception as exc:  # anything else pydicom's path raises, the same way
        return ("raised", type(exc).__name__, str(exc))


def check_both_paths(data: bytes) -> dict[str, bool]:
    """Assert that both paths agree on ``data``, streamed and read back whole, at each threshold;
    say in which modes the walk built the record itself."""
    tee = _tee(data)
    modes = {
        "streamed": (tee.prefix, tee.complete_in_prefix, tee.scanner),
        "whole": (bytearray(data), True, None),
    }
    walked = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's warnings about the odder files
        for mode, (prefix, complete, scanner) in modes.items():
            for threshold in THRESHOLDS:
                args = (prefix, complete, "blob-key", len(data), threshold, scanner)
                expected = _outcome(partial(ingest._record_from, *args))
                fast = ingest._walked_record(*args)
                if fast is not None:
                    assert _comparable(fast) == expected, (mode, threshold)
                    assert fast[1].transfer_syntax_uid == fast[0].transfer_syntax_uid
                assert _outcome(partial(ingest._record_from, *args, with_dataset=False)) == expected
                walked[mode] = fast is not None
    return walked


# --------------------------------------------------------------------------- pydicom's files


def _pydicom_part10_files() -> list[Path]:
    """Every file in pydicom's installed data directory that starts like a Part 10 file."""
    found = []
    for path in sorted(PYDICOM_DATA.rglob("*")):
        if path.is_file():
            with path.open("rb") as f:
                if f.read(132)[128:132] == b"DICM":
                    found.append(path)
    return found


PYDICOM_FILES = _pydicom_part10_files()


@pytest.mark.parametrize("path", PYDICOM_FILES, ids=[str(p.relative_to(PYDICOM_DATA)) for p in PYDICOM_FILES])
def test_every_pydicom_file(path: Path) -> None:
    check_both_paths(path.read_bytes())


def test_the_walk_takes_most_pydicom_files() -> None:
    assert len(PYDICOM_FILES) > 100
    names = {
        "CT_small.dcm",  # explicit VR with private tags
        "MR_small.dcm",
        "JPEG2000.dcm",  # encapsulated
        "SC_rgb_rle_2frame.dcm",
        "rtplan.dcm",  # implicit VR, nested sequences
        "rtdose.dcm",  # implicit VR, multi-frame
        "test-SR.dcm",  # no pixel data, deep sequences
        "waveform_ecg.dcm",
        "charset_files/chrFren.dcm",  # ISO_IR 100
        "charset_files/chrX1.dcm",  # ISO_IR 192
    }
    walked = {name for name in names if walk_header(_file(name), complete=True, bulk_data_threshold=1024)}
    assert walked == names
    taken = sum(
        walk_header(p.read_bytes()[: 1 << 20], complete=True, bulk_data_threshold=1024) is not None
        for p in PYDICOM_FILES
    )
    assert taken > len(PYDICOM_FILES) * 0.6


def _file(name: str) -> bytes:
    """A pydicom data file: ``"charset_files/chrX1.dcm"``, or a name in test_files."""
    return (PYDICOM_DATA / (name if "/" in name else f"test_files/{name}")).read_bytes()


# --------------------------------------------------------------------------- the synthetic corpora


@pytest.fixture(scope="module", params=["CT", "MR", "US-multiframe"])
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    if not MAKE_CORPUS.is_file():
        pytest.skip(f"no corpus generator at {MAKE_CORPUS} (set DICOMWEB_KIT_MAKE_CORPUS)")
    out = tmp_path_factory.mktemp(f"corpus-{request.param}")
    command = [sys.executable, str(MAKE_CORPUS), "--out", str(out), "--modality", request.param, "--seed", "7"]
    command += ["--studies", "1", "--series-per-study", "2", "--instances-per-series", "2", "--jobs", "1"]
    if request.param == "US-multiframe":
        command += ["--frames", "3"]
    subprocess.run(command, check=True, capture_output=True)
    return sorted(out.rglob("*.dcm"))


def _reencoded(data: bytes, transfer_syntax: str) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    return part10_bytes(ds)


def test_the_corpus_is_walked_in_both_little_endian_syntaxes(corpus: list[Path]) -> None:
    assert corpus
    for path in corpus:
        data = path.read_bytes()
        assert check_both_paths(data) == {"streamed": True, "whole": True}, path
        assert check_both_paths(_reencoded(data, ImplicitVRLittleEndian)) == {"streamed": True, "whole": True}


# --------------------------------------------------------------------------- generated edge cases


def _encoded(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    return part10_bytes(ds)


def _item(**attributes: Any) -> Dataset:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item


def _sequences(undefined: bool) -> Callable[[Dataset], None]:
    """Nested sequences and items, all of defined or all of undefined length (PS3.5 §7.5)."""

    def add(ds: Dataset) -> None:
        code = _item(CodeValue="113691", CodingSchemeDesignator="DCM", CodeMeaning="IHE Protocol")
        reference = _item(ReferencedSOPClassUID="1.2.3", ReferencedSOPInstanceUID="1.2.3.4")
        reference.PurposeOfReferenceCodeSequence = Sequence([code])
        ds.ReferencedImageSequence = Sequence([reference, Dataset(), reference])
        ds.ProcedureCodeSequence = Sequence([])
        for element in ds.iterall():
            if element.VR == "SQ":
                element.is_undefined_length = undefined
                for item in element.value:
                    item.is_undefined_length_sequence_item = undefined

    return add


def _values_of_every_kind(ds: Dataset) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY", "", "AXIAL"]  # an empty value inside a multi-valued one
    ds.PixelSpacing = ["0.703125", "0.703125"]
    ds.ImagePositionPatient = ["-180", "-180.5", "1e2"]
    ds.WindowCenter = ["40", "NaN"]  # a NaN DS is stored as null
    ds.EchoNumbers = ["1", "2", "3"]
    ds.FrameIncrementPointer = [0x00181063, 0x00181065]  # AT, multi-valued
    ds.add_new(0x00189219, "FD", [1.5, -2.25])
    ds.add_new(0x00186030, "FL", [3.5])  # not its dictionary VR: the file's VR rules
    ds.add_new(0x00720076, "SL", [-7, 8])
    ds.add_new(0x00280106, "US", 0)
    ds.add_new(0x00281052, "DS", "-1024")
    ds.add_new(0x00189461, "FL", [])  # empty
    ds.add_new(0x00081030, "LO", "")  # empty text
    ds.ReferringPhysicianName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.OperatorsName = ["Doe^John", "", "Roe^Richard^^Dr"]
    ds.StudyDescription = "Tête / thorax"
    ds.add_new(0x00321060, "LT", "line one\\ still one\r\nline two ")
    ds.add_new(0x00189004, "CS", "RESEARCH ")
    ds.add_new(0x00080090, "PN", "")
    ds.add_new(0x00101010, "AS", "042Y")
    ds.add_new(0x00080201, "SH", "+0100")
    ds.add_new(0x00400009, "SH", ["A", "B"])
    ds.add_new(0x00880140, "UI", "")
    ds.add_new(0x00720064, "IS", ["1", " 2", "3 "])
    ds.add_new(0x0072002A, "SS", [-1, 2])
    ds.add_new(0x00720066, "SV", [-(1 << 40)])
    ds.add_new(0x00720068, "UV", [1 << 50])
    ds.add_new(0x0072006E, "UL", [4000000000])
    ds.add_new(0x00189328, "OD", struct.pack("<2d", 1.0, 2.0))
    ds.add_new(0x00660023, "OF", struct.pack("<3f", 1.0, 2.0, 3.0))
    ds.add_new(0x00660040, "OL", struct.pack("<2L", 1, 2))
    ds.add_new(0x00660129, "OV", struct.pack("<Q", 5))
    ds.add_new(0x00282000, "OB", b"icc profile bytes" * 100)  # over the threshold: a BulkDataURI
    ds.add_new(0x00186060, "FL", [1.0] * 300)  # long, but not binary: always a Value


def _private(ds: Dataset) -> None:
    block = ds.private_block(0x0009, "ACME 1.1", create=True)
    block.add_new(0x01, "LO", "value text")
    block.add_new(0x02, "DS", ["1.25", "2.5"])
    block.add_new(0x03, "US", [1, 2, 3])
    block.add_new(0x04, "OB", b"\x00\x01\x02\x03")
    block.add_new(0x05, "SQ", Sequence([_item(PatientID="in a private sequence")]))
    ds.add_new(0x00291010, "OB", b"\xff" * 3000)  # no creator for it: still an ordinary OB


def _charset(term: str, name: str) -> Callable[[Dataset], None]:
    def add(ds: Dataset) -> None:
        ds.SpecificCharacterSet = term
        ds.PatientName = name

    return add


def _fragments(frames: list[bytes], per_frame: int) -> tuple[bytes, list[int]]:
    """Encapsulated Pixel Data (PS3.5 §A.4): an empty Basic Offset Table item, then each frame in
    ``per_frame`` fragments; and the offset of each frame's first item from the first fragment's."""
    value, offsets, at = bytearray(b"\xfe\xff\x00\xe0\0\0\0\0"), [], 0
    for frame in frames:
        offsets.append(at)
        size = len(frame) // per_frame
        for piece in (frame[i * size : (i + 1) * size if i < per_frame - 1 else None] for i in range(per_frame)):
            value += b"\xfe\xff\x00\xe0" + struct.pack("<L", len(piece)) + piece
            at += 8 + len(piece)
    return bytes(value + b"\xfe\xff\xdd\xe0\0\0\0\0"), offsets


def _encapsulated(frames: list[bytes], *, per_frame: int = 1, extended: bool = False) -> Callable[[Dataset], None]:
    def add(ds: Dataset) -> None:
        ds.PixelData, offsets = _fragments(frames, per_frame)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.NumberOfFrames = len(frames)
        if extended:
            # PS3.3 §C.7.6.3.1.8: where each frame starts, and how long it is.
            ds.ExtendedOffsetTable = struct.pack(f"<{len(offsets)}Q", *offsets)
            ds.ExtendedOffsetTableLengths = struct.pack(f"<{len(frames)}Q", *map(len, frames))
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit

    return add


JPEG_LIKE = [b"\xff\xd8" + bytes([i]) * 100 + b"\xff\xd9" for i in range(3)]


def _no_pixels(ds: Dataset) -> None:
    del ds.PixelData
    ds.add_new(0xFFFCFFFC, "OB", b"\0" * 6)  # Data Set Trailing Padding


def _float_pixels(ds: Dataset) -> None:
    del ds.PixelData
    ds.FloatPixelData = np.zeros(16, "<f4").tobytes()


def _icon(ds: Dataset) -> None:
    icon = _item(Rows=2, Columns=2, BitsAllocated=8, SamplesPerPixel=1, PixelData=b"\x01\x02\x03\x04")
    ds.IconImageSequence = Sequence([icon])  # a Pixel Data element in an item: not where the header ends


def _group_lengths(ds: Dataset) -> None:
    ds.add_new(0x00080000, "UL", 0)
    ds.add_new(0x00100000, "UL", 0)


def _number_of_frames(value: str) -> Callable[[Dataset], None]:
    def add(ds: Dataset) -> None:
        ds.add_new(0x00280008, "IS", value)

    return add


# name -> (how to change a small CT instance, whether the walk takes it)
EDITS: dict[str, tuple[Callable[[Dataset], None], bool]] = {
    "plain": (lambda ds: None, True),
    "defined length sequences": (_sequences(undefined=False), True),
    "undefined length sequences": (_sequences(undefined=True), True),
    "values of every kind": (_values_of_every_kind, True),
    "private tags": (_private, True),
    "ISO_IR 100": (_charset("ISO_IR 100", "Müller^Jürgen"), True),
    "ISO_IR 192": (_charset("ISO_IR 192", "Müller^Jürgen=山田^太郎"), True),
    "ISO_IR 6": (_charset("ISO_IR 6", "Doe^Jane"), True),
    "empty charset": (_charset("", "Doe^Jane"), True),
    "Japanese ISO 2022": (_charset("\\ISO 2022 IR 87", "Yamada^Tarou=\033$B;3ED\033(B^\033$BB@O:\033(B"), False),
    "Cyrillic": (_charset("ISO_IR 144", "Люкceмбypг"), False),
    # The layout's inputs: Number of Frames decides how these fragments make frames, and the
    # Extended Offset Table overrides the JPEG markers.
    "encapsulated frames": (_encapsulated([bytes([i]) * 64 for i in range(3)]), True),
    "extended offset table": (_encapsulated(JPEG_LIKE, per_frame=2, extended=True), True),
    "no pixel data": (_no_pixels, True),
    "float pixel data": (_float_pixels, True),
    "icon image": (_icon, True),
    "group lengths": (_group_lengths, True),
    "frames 5": (_number_of_frames("5"), True),
    "frames 0": (_number_of_frames("0"), True),
    "frames multi": (_number_of_frames("2\\3"), True),
    "frames empty": (_number_of_frames(""), True),
    "UN element": (lambda ds: ds.add_new(0x00091001, "UN", b"1234"), False),
    "UR element": (lambda ds: ds.add_new(0x00081190, "UR", "https://example.com/x"), False),
    "LUT descriptor": (lambda ds: ds.add_new(0x00281101, "US", [256, 0, 16]), False),
    "no SOP Instance UID": (lambda ds: delattr(ds, "SOPInstanceUID"), False),
    "bad Study UID": (lambda ds: setattr(ds, "StudyInstanceUID", "1.2.abc"), False),
    "two Series UIDs": (lambda ds: setattr(ds, "SeriesInstanceUID", ["1.2.3", "1.2.4"]), False),
    "charset in an item": (
        lambda ds: setattr(ds, "ReferencedImageSequence", Sequence([_item(SpecificCharacterSet="ISO_IR 100")])),
        False,
    ),
}


@pytest.mark.parametrize("name", list(EDITS))
@pytest.mark.parametrize(
    "transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian], ids=["explicit", "implicit"]
)
def test_generated_cases(name: str, transfer_syntax: str) -> None:
    edit, taken = EDITS[name]
    ds = make_dataset(rows=4, columns=4)
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    edit(ds)
    if ds.file_meta.TransferSyntaxUID != transfer_syntax and transfer_syntax == ImplicitVRLittleEndian:
        pytest.skip("an encapsulated syntax is explicit VR")
    data = part10_bytes(ds)
    walked = check_both_paths(data)
    if transfer_syntax == ImplicitVRLittleEndian and name in ("private tags", "values of every kind"):
        taken = False  # pydicom's private dictionary and ambiguous VRs decide there
    if name == "icon image":
        # The nested Pixel Data tag ends the streamed prefix early; the read-back is walked,
        # unless its VR is implicit ("OB or OW": pydicom decides).
        assert walked == {"streamed": False, "whole": transfer_syntax == ExplicitVRLittleEndian}
    else:
        assert walked == {"streamed": taken, "whole": taken}


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian])
def test_other_encodings_decline(transfer_syntax: str) -> None:
    data = _encoded(make_dataset(), transfer_syntax)
    assert walk_header(data, complete=True, bulk_data_threshold=1024) is None
    check_both_paths(data)


# --------------------------------------------------------------------------- hand-made bytes


def _element(tag: int, vr: str, value: bytes) -> bytes:
    """An Explicit VR Little Endian element (PS3.5 §7.1.2), lengths as given (odd ones too)."""
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode()
    if vr in ("OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"):
        return head + b"\0\0" + struct.pack("<L", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def _hand_made(*elements: bytes, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
    meta.MediaStorageSOPInstanceUID = UID("1.2.3.4")
    meta.TransferSyntaxUID = UID(transfer_syntax)
    out = io.BytesIO()
    out.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)  # type: ignore[arg-type]
    return out.getvalue() + b"".join(elements)


UIDS = [
    _element(0x00080016, "UI", b"1.2.840.10008.5.1.4.1.1.7\0"),
    _element(0x00080018, "UI", b"1.2.3.4\0"),
    _element(0x0020000D, "UI", b"1.2.3.5\0"),
    _element(0x0020000E, "UI", b"1.2.3.6\0"),
]
PIXELS = _element(0x7FE00010, "OW", b"\x01\x00" * 8)
UNDEFINED = b"\xff\xff\xff\xff"
ITEM, ITEM_END, SEQUENCE_END = b"\xfe\xff\x00\xe0", b"\xfe\xff\x0d\xe0\0\0\0\0", b"\xfe\xff\xdd\xe0\0\0\0\0"
# Encapsulated Pixel Data (PS3.5 §A.4): an empty Basic Offset Table, two 4-byte fragments.
ENCAPSULATED = (
    b"\xe0\x7f\x10\x00OB\0\0"
    + UNDEFINED
    + ITEM
    + b"\0\0\0\0"
    + (ITEM + b"\x04\0\0\0" + b"\xff\xd8\xff\xd9") * 2
    + SEQUENCE_END
)

REFERENCE = _element(0x00081150, "UI", b"1.2\0")  # 12 bytes


def _with_sequence(length: bytes, *content: bytes) -> bytes:
    """A file whose (0008,1115) has the 4-byte ``length`` and ``content`` (PS3.5 §7.5)."""
    sequence = b"\x08\x00\x15\x11SQ\0\0" + length + b"".join(content)
    return _hand_made(*UIDS[:2], sequence, *UIDS[2:], PIXELS)


def _with_charset(term: bytes) -> bytes:
    """A file whose (0008,0005) value is ``term``, padded as given, with a non-ASCII name."""
    name = _element(0x00100010, "PN", "Müller^Jürgen=山田".encode() + b" ")
    return _hand_made(_element(0x00080005, "CS", term), *UIDS[:2], name, *UIDS[2:], PIXELS)


HAND_MADE: dict[str, tuple[bytes, bool]] = {
    "charset padded with NULs": (_with_charset(b"ISO_IR 100\0\0"), True),
    "charset padded with spaces": (_with_charset(b"ISO_IR 192  "), True),
    "charset of NULs": (_with_charset(b"\0\0"), True),
    "charset with a leading space": (_with_charset(b" ISO_IR 100 "), False),
    "charset in lower case": (_with_charset(b"iso_ir 100"), False),
    "charset with an empty second value": (_with_charset(b"ISO_IR 100\\"), False),
    "odd length text": (_hand_made(_element(0x00080008, "CS", b"ABC"), *UIDS, PIXELS), True),
    "SOP Class mismatch": (_hand_made(_element(0x00080016, "UI", b"1.2.3\0"), *UIDS[1:], PIXELS), False),
    "IS that is no number": (_hand_made(*UIDS, _element(0x00280008, "IS", b"1A"), PIXELS), False),
    "Number of Frames as US": (_hand_made(*UIDS, _element(0x00280008, "US", b"\x02\x00"), PIXELS), False),
    "odd length US": (_hand_made(*UIDS, _element(0x00280010, "US", b"\x01\x02\x03"), PIXELS), False),
    "trailing space UID": (_hand_made(*UIDS[:3], _element(0x0020000E, "UI", b"1.2.3.6 "), PIXELS), True),
    "out of order": (_hand_made(UIDS[1], UIDS[0], *UIDS[2:], PIXELS), False),
    "repeated tag": (_hand_made(*UIDS, UIDS[3], PIXELS), False),
    "unknown VR": (_hand_made(_element(0x00080008, "XX", b"AB"), *UIDS, PIXELS), False),
    # Referenced Series Sequence (0008,1115) made by hand; first two that are right.
    "undefined length items": (_with_sequence(UNDEFINED, ITEM + UNDEFINED, REFERENCE, ITEM_END, SEQUENCE_END), True),
    "defined length items": (_with_sequence(b"\x14\0\0\0", ITEM + b"\x0c\0\0\0", REFERENCE), True),
    "undefined length OB in an item": (
        _with_sequence(
            UNDEFINED,
            ITEM + UNDEFINED,
            b"\x09\x00\x10\x10OB\0\0" + UNDEFINED + ITEM + b"\0\0\0\0" + SEQUENCE_END,
            ITEM_END,
            SEQUENCE_END,
        ),
        False,
    ),
    "item delimiter with a length": (
        _with_sequence(UNDEFINED, ITEM + UNDEFINED, REFERENCE, b"\xfe\xff\x0d\xe0\x04\0\0\0", SEQUENCE_END),
        False,
    ),
    "an element past the end of its item": (
        _with_sequence(b"\x14\0\0\0", ITEM + b"\x06\0\0\0", REFERENCE),
        False,
    ),
    "sequence delimiter in a defined length": (
        _with_sequence(b"\x18\0\0\0", ITEM + b"\0\0\0\0", SEQUENCE_END, ITEM + b"\0\0\0\0"),
        False,
    ),
    "Command elements first": (_hand_made(_element(0x00000002, "UI", b"1.2\0"), *UIDS, PIXELS), False),
    "ends inside an element": (_hand_made(*UIDS, _element(0x00100010, "PN", b"Doe^Jane")[:-3]), False),
    "ends after 4 bytes of an element": (_hand_made(*UIDS, b"\x10\x00\x10\x00"), False),
    "no data set": (_hand_made(), False),
    "pixel data at the very end": (_hand_made(*UIDS, PIXELS[:12]), True),
    "short pixel data header": (_hand_made(*UIDS, PIXELS[:10]), False),
    "Extended Offset Table as UL": (
        _hand_made(
            *UIDS,
            _element(0x7FE00001, "UL", b"\x08\0\0\0"),
            _element(0x7FE00002, "OV", struct.pack("<Q", 4)),
            ENCAPSULATED,
            transfer_syntax=JPEGBaseline8Bit,
        ),
        False,
    ),
    "Extended Offset Table": (
        _hand_made(
            *UIDS,
            _element(0x7FE00001, "OV", struct.pack("<Q", 0)),
            _element(0x7FE00002, "OV", struct.pack("<Q", 4)),
            ENCAPSULATED,
            transfer_syntax=JPEGBaseline8Bit,
        ),
        True,
    ),
    "group length as a sequence": (
        _hand_made(b"\x08\x00\x00\x00SQ\0\0" + UNDEFINED + SEQUENCE_END, *UIDS, PIXELS),
        False,
    ),
}


@pytest.mark.parametrize("name", list(HAND_MADE))
def test_hand_made_bytes(name: str) -> None:
    data, taken = HAND_MADE[name]
    walked = check_both_paths(data)
    assert walked["whole"] is taken


def test_data_cut_anywhere() -> None:
    """A prefix without the whole header: the walk declines (pydicom asks for more bytes), and
    a file cut short gives what pydicom gives."""
    data = part10_bytes(make_dataset())
    whole = walk_header(data, complete=True, bulk_data_threshold=1024)
    assert whole is not None
    # Past the Pixel Data element's tag, VR and length (12 bytes) the header is all there.
    header_end = whole.header_length + 12
    for cut in range(0, len(data), 37):
        if cut < header_end:
            assert walk_header(data[:cut], complete=False, bulk_data_threshold=1024) is None
        for complete in (False, True):
            args = (bytearray(data[:cut]), complete, "k", len(data), 1024, None)
            expected = _outcome(partial(ingest._record_from, *args))
            assert _outcome(partial(ingest._record_from, *args, with_dataset=False)) == expected


def test_the_dataset_is_only_left_out_when_asked() -> None:
    data = part10_bytes(make_dataset(PatientName="Doe^Jane"))
    args = (bytearray(data), True, "k", len(data), 1024, None)
    assert ingest._record_from(*args)[1].dataset.PatientName == "Doe^Jane"
    assert len(ingest._record_from(*args, with_dataset=False)[1].dataset) == 0


def test_bulk_data_paths_in_items() -> None:
    ds = make_dataset()
    ds.ReferencedImageSequence = Sequence([Dataset(), _item(RedPaletteColorLookupTableData=b"\0" * 2000)])
    data = part10_bytes(ds)
    walked = walk_header(data, complete=True, bulk_data_threshold=1024)
    assert walked is not None
    walked.resolve_bulk_data_uris(lambda path: f"base/{path}")
    attribute = walked.attributes["00081140"]["Value"][1]["00281201"]
    assert attribute == {"vr": "OW", "BulkDataURI": "base/00081140/1/00281201"}
    check_both_paths(data)


def _mutated(rng: random.Random, data: bytes) -> bytes:
    """``data`` with a few bytes of its header changed, removed, or cut off."""
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3))):
        end = min(len(out), 4000)
        if end <= 133:
            break
        at = rng.randrange(132, end)
        kind = rng.random()
        if kind < 0.5:
            out[at] = rng.randrange(256)
        elif kind < 0.7:  # something that means structure: lengths, item tags, VRs
            out[at : at + 4] = rng.choice([UNDEFINED, ITEM, SEQUENCE_END[:4], ITEM_END[:4], b"\0\0\0\0", b"UN", b"SQ"])
        elif kind < 0.85:
            del out[at : at + rng.randrange(1, 8)]
        else:
            del out[at:]
    return bytes(out)


def test_damaged_headers() -> None:
    """Bytes changed at random in the header: the walk never disagrees with pydicom's path."""
    rng = random.Random(20240601)
    sources = [_file(name) for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm", "test-SR.dcm")]
    ds = make_dataset()
    _sequences(undefined=True)(ds)
    _private(ds)
    sources.append(part10_bytes(ds))
    walked = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(300):
            data = _mutated(rng, rng.choice(sources))
            for complete in (True, False):
                args = (bytearray(data), complete, "k", len(data), rng.choice(THRESHOLDS), None)
                expected = _outcome(partial(ingest._record_from, *args))
                fast = ingest._walked_record(*args)
                if fast is not None:
                    walked += 1
                    assert _comparable(fast) == expected
                assert _outcome(partial(ingest._record_from, *args, with_dataset=False)) == expected
    assert walked > 60  # damage the walk takes too (values), not only what it declines
