"""The pixel-data rows of the server benchmark: frames, rendered images and thumbnails.

Kept apart from server_benchmark.py so each file stays about one thing. The 500-frame JPEG
instance is built here (Pillow encodes each 8-bit frame, pydicom encapsulates them with a Basic
Offset Table) and stored on every server before the timed requests.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, generate_uid

OCTET_FRAMES = "multipart/related; type=application/octet-stream; transfer-syntax=*"  # as OHIF sends it
MULTIFRAME_FRAMES = 500
PICKED_FRAME = 250


@dataclass(frozen=True)
class PixelTarget:
    """An instance to fetch pixels of: its resource path under the service root and frame size."""

    path: str
    frame_bytes_min: int


def instance_path(study: str, series: str, sop: str) -> str:
    return f"/studies/{study}/series/{series}/instances/{sop}"


def first_ct_instance(study_uid: str, series_uid: str, file: Path) -> PixelTarget:
    ds = pydicom.dcmread(file, stop_before_pixels=True)
    size = int(ds.Rows) * int(ds.Columns) * int(ds.BitsAllocated) // 8
    return PixelTarget(instance_path(study_uid, series_uid, str(ds.SOPInstanceUID)), size)


def multiframe_dataset(sop_class: str, transfer_syntax: str, frames: int, size: int, *, bits: int) -> Dataset:
    """A multi-frame Secondary Capture data set of ``frames`` grey ``size`` x ``size`` frames, no pixels yet."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality, ds.StudyDate = "Frames^Many", "PID-FRAMES", "OT", "20240101"
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    stored = 8 if bits == 8 else 12
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, stored, stored - 1, 0
    ds.NumberOfFrames = frames
    return ds


def jpeg_multiframe(frames: int = MULTIFRAME_FRAMES, size: int = 256, seed: int = 7) -> tuple[bytes, PixelTarget]:
    """A Part 10 Secondary Capture instance of ``frames`` 8-bit JPEG Baseline frames."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    encoded = []
    for i in range(frames):
        phase = 2 * np.pi * i / frames
        image = (127 + 100 * np.sin(xx / 9 + phase) * np.cos(yy / 13)).astype(np.uint8)
        image = np.clip(image.astype(int) + rng.integers(-8, 8, image.shape), 0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(image, mode="L").save(out, format="JPEG", quality=90)
        encoded.append(out.getvalue())
    ds = multiframe_dataset("1.2.840.10008.5.1.4.1.1.7.2", JPEGBaseline8Bit, frames, size, bits=8)  # Grayscale Byte SC
    ds.PixelData = encapsulate(encoded, has_bot=True)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    smallest = min(len(e) for e in encoded)
    path = instance_path(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
    return out.getvalue(), PixelTarget(path, smallest)


def _body_at_least(minimum: int, magic: bytes | None = None) -> Callable[[Any], None]:
    def validate(resp: Any) -> None:
        if resp.status != 200:
            raise ValueError(f"status {resp.status}")
        if len(resp.body) < minimum:
            raise ValueError(f"{len(resp.body)} bytes, expected at least {minimum}")
        if magic is not None and not resp.body.startswith(magic):
            raise ValueError(f"the body does not start with {magic!r}")

    return validate


PixelRequest = tuple[str, str, dict[str, str], Callable[[Any], None]]


def pixel_requests(ct: PixelTarget, multiframe: PixelTarget) -> Sequence[PixelRequest]:
    """(name, target, headers, validator) for each timed pixel request."""
    jpeg, png = b"\xff\xd8", b"\x89PNG"
    return [
        ("frame 1 of a 512x512 CT", f"{ct.path}/frames/1", {"Accept": OCTET_FRAMES},
         _body_at_least(ct.frame_bytes_min)),
        (f"frame {PICKED_FRAME} of a {MULTIFRAME_FRAMES}-frame JPEG", f"{multiframe.path}/frames/{PICKED_FRAME}",
         {"Accept": OCTET_FRAMES}, _body_at_least(multiframe.frame_bytes_min)),
        ("rendered JPEG (512x512 CT)", f"{ct.path}/rendered", {"Accept": "image/jpeg"}, _body_at_least(1000, jpeg)),
        ("rendered PNG (512x512 CT)", f"{ct.path}/rendered", {"Accept": "image/png"}, _body_at_least(1000, png)),
        ("thumbnail (CT instance)", f"{ct.path}/thumbnail", {"Accept": "image/jpeg"}, _body_at_least(100, jpeg)),
    ]  # fmt: skip
