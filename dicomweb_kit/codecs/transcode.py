"""Re-encoding an uncompressed instance in Explicit VR Little Endian.

PS3.18 §8.7.3.5: Implicit VR Little Endian and Explicit VR Big Endian shall not be used with
web services, so WADO-RS sends such instances as Explicit VR Little Endian. Pixel data is not
decoded: only the byte order of OW/OF/OL/OD/OV values changes for Big Endian sources.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

__all__ = ["UNCOMPRESSED", "to_explicit_vr_little_endian"]

UNCOMPRESSED = frozenset(
    {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian}
)

# Width of one word of each "other" VR whose raw bytes pydicom keeps in file byte order.
_WORD_BYTES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def to_explicit_vr_little_endian(data: bytes, /) -> bytes:
    """Return the Part 10 file ``data`` re-encoded as Explicit VR Little Endian."""
    ds = pydicom.dcmread(io.BytesIO(data))
    if ds.original_encoding[1] is False:  # big endian: swap the words pydicom left as raw bytes
        _swap_words(ds)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    # Some writers leave these out of the file meta; a Part 10 file must have them (PS3.10 §7.1).
    if not ds.file_meta.get("MediaStorageSOPClassUID") and "SOPClassUID" in ds:
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if not ds.file_meta.get("MediaStorageSOPInstanceUID") and "SOPInstanceUID" in ds:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return out.getvalue()


def _swap_words(ds: Dataset) -> None:
    bits_allocated = ds.get("BitsAllocated")
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _swap_words(item)
        elif elem.VR in _WORD_BYTES and isinstance(elem.value, bytes | bytearray) and elem.value:
            width = _WORD_BYTES[elem.VR]
            if elem.tag == 0x7FE00010 and bits_allocated in (32, 64):
                width = bits_allocated // 8  # pixel words are as wide as Bits Allocated (PS3.5 §8.1.1)
            if len(elem.value) % width == 0:
                elem.value = np.frombuffer(elem.value, dtype=f">u{width}").astype(f"<u{width}").tobytes()
