"""Time ``dataset_to_json_dict`` + ``encode`` against pydicom's ``to_json_dict`` + ``json.dumps``.

Each run parses the file again (both sides pay pydicom's ``dcmread`` the same way; the read
time is shown separately), because converting a data set also caches pydicom's converted
elements in it.

A second table times what STOW-RS does with each header (the bytes up to Pixel Data):
``header_walk.walk_header`` + ``encode`` against ``parse_header`` (pydicom's ``dcmread``) +
``dataset_to_json_dict`` + ``encode``, with a BulkDataURI factory as ingest uses.

Run: ``python benchmarks/dicom_json_benchmark.py [more.dcm ...]`` (e.g. a corpus CT instance).
"""

from __future__ import annotations

import io
import json
import sys
import timeit
import warnings
from collections.abc import Callable
from pathlib import Path

import pydicom
import pydicom.data
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomweb_kit.codecs.dicom_json import dataset_to_json_dict, encode
from dicomweb_kit.codecs.header_walk import walk_header
from dicomweb_kit.codecs.part10 import parse_header

DATA_DIR = Path(pydicom.data.__file__).parent
FILES = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtstruct.dcm", "waveform_ecg.dcm", "chrH31.dcm"]
HUGE = 1 << 40


def synthetic_ct_header(attributes: int = 200) -> bytes:
    """A CT-like header of `attributes` elements (public ones, then private LO/DS/US padding)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.PatientName = "Doe^Jane^^Mrs"
    ds.PatientID = "PAT-0001"
    ds.StudyDate, ds.StudyTime = "20240101", "101500.000"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PixelSpacing = [0.703125, 0.703125]
    ds.ImagePositionPatient = [-180.0, -180.0, 12.5]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.Rows = ds.Columns = 512
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
    ds.WindowCenter, ds.WindowWidth = ["40", "400"], ["400", "1500"]
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = generate_uid()
    ds.ReferencedImageSequence = [item, item]
    group, element = 0x0019, 0x1000
    ds.add_new(0x00190010, "LO", "SYNTHETIC")
    while len(ds) < attributes:
        vr, value = [("LO", "value text"), ("DS", "1.25\\2.5"), ("US", [1, 2, 3])][element % 3]
        ds.add_new((group << 16) | element, vr, value)
        element += 1
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def best_ms(func: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(func, number=number, repeat=5)) / number * 1000


def measure(name: str, raw: bytes, number: int = 100) -> tuple[str, float, float, float]:
    def read() -> Dataset:
        return pydicom.dcmread(io.BytesIO(raw), force=True)

    def ours() -> bytes:
        return encode(dataset_to_json_dict(read(), bulk_data_threshold=HUGE))

    def theirs() -> str:
        return json.dumps(read().to_json_dict(bulk_data_threshold=HUGE))

    return name, best_ms(read, number), best_ms(ours, number), best_ms(theirs, number)


def short_name(path: Path) -> str:
    """``CT/.../inst-0000.dcm`` for a corpus file: its modality directory and its name."""
    return f"{path.parts[-4]}/.../{path.name}" if len(path.parts) >= 4 else path.name


def header_prefix(raw: bytes) -> tuple[bytes, bool]:
    """What STOW-RS keeps of an instance: up to a little past Pixel Data, or all of it."""
    header = parse_header(raw, complete=True)
    if header.pixel_data_vr is None:
        return raw, True
    return raw[: header.header_length + 16], False


def measure_header(name: str, raw: bytes, number: int = 200) -> tuple[str, int, float | None, float]:
    prefix, complete = header_prefix(raw)

    def factory(path: str) -> str:
        return f"studies/1/series/2/instances/3/bulkdata/{path}"

    def walked() -> bytes:
        walk = walk_header(prefix, complete=complete, bulk_data_threshold=1024)
        assert walk is not None
        walk.resolve_bulk_data_uris(factory)
        return encode(walk.attributes)

    def pydicom_path() -> bytes:
        ds = parse_header(prefix, complete=complete).dataset
        return encode(dataset_to_json_dict(ds, bulk_data_uri=factory, bulk_data_threshold=1024))

    taken = walk_header(prefix, complete=complete, bulk_data_threshold=1024) is not None
    walk_ms = best_ms(walked, number) if taken else None
    return name, len(prefix), walk_ms, best_ms(pydicom_path, number)


def main() -> None:
    warnings.simplefilter("ignore")
    cases = [
        (n, (DATA_DIR / ("charset_files" if n.startswith("chr") else "test_files") / n).read_bytes()) for n in FILES
    ]
    cases.append(("synthetic CT header (200 attrs)", synthetic_ct_header()))
    cases += [(short_name(Path(arg)), Path(arg).read_bytes()) for arg in sys.argv[1:]]
    rows = [measure(name, raw) for name, raw in cases]
    print(f"| {'data set':32} | {'dcmread ms':>10} | {'ours ms':>8} | {'pydicom ms':>10} | {'speed-up':>8} |")
    print(f"|{'-' * 34}|{'-' * 11}:|{'-' * 9}:|{'-' * 11}:|{'-' * 9}:|")
    for name, read_ms, ours_ms, theirs_ms in rows:
        ratio = theirs_ms / ours_ms
        print(f"| {name:32} | {read_ms:10.3f} | {ours_ms:8.3f} | {theirs_ms:10.3f} | {ratio:7.1f}x |")
    print("(ours = dcmread + dataset_to_json_dict + encode; pydicom = dcmread + to_json_dict + json.dumps)")
    print()
    print("header walk vs pydicom dcmread+convert (the STOW-RS header parse, ms per instance)")
    print(f"| {'header':32} | {'bytes':>7} | {'walk ms':>8} | {'pydicom ms':>10} | {'speed-up':>8} |")
    print(f"|{'-' * 34}|{'-' * 8}:|{'-' * 9}:|{'-' * 11}:|{'-' * 9}:|")
    part10 = [(name, raw) for name, raw in cases if raw[128:132] == b"DICM"]  # as STOW-RS stores them
    for name, size, walk_ms, pydicom_ms in (measure_header(name, raw) for name, raw in part10):
        if walk_ms is None:
            print(f"| {name:32} | {size:7} | {'declines':>8} | {pydicom_ms:10.3f} | {'':>8} |")
        else:
            ratio = pydicom_ms / walk_ms
            print(f"| {name:32} | {size:7} | {walk_ms:8.3f} | {pydicom_ms:10.3f} | {ratio:7.1f}x |")
    print("(walk = walk_header + encode; pydicom = parse_header + dataset_to_json_dict + encode)")


if __name__ == "__main__":
    main()
