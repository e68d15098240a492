"""Re-encoding whole Part 10 instances in another transfer syntax (PS3.5 §10, Annex A).

WADO-RS sends an instance in the transfer syntax the client negotiated (PS3.18 §8.7.3): native
to native (Explicit VR Little Endian, Deflated Explicit VR Little Endian), compressed to native,
and native or compressed to any syntax :mod:`.pixel_codecs` can encode. Everything runs
synchronously: callers put it in a worker thread, and it holds one instance at a time.

* PS3.18 §8.7.3.5: Implicit VR Little Endian and Explicit VR Big Endian shall not be used with
  web services, so they are never produced.
* Decompression follows pydicom's ``Dataset.decompress``: YBR colour becomes RGB, Planar
  Configuration becomes 0, the SOP Instance UID is kept (the pixels are not changed by it).
* Lossy encoding sets Lossy Image Compression (0028,2110) to "01" and appends the ratio and
  method (PS3.3 §C.7.6.1.1.5). The SOP Instance UID is kept: the instance is re-encoded for this
  response, not stored anew, as other DICOMweb servers do.
* An instance without Pixel Data (SR, presentation states, ...) is written in any requested
  syntax as it is: an encapsulated transfer syntax only changes how Pixel Data is encoded.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
)

from ..pixels.description import PixelDescription
from .pixel_codecs import (
    LOSSY,
    LOSSY_METHOD,
    UNCOMPRESSED,
    FrameProfile,
    can_decode,
    encapsulated_frames,
    encodable_syntaxes,
    encode_array,
    unencodable_reason,
)

__all__ = [
    "NATIVE_FOR_WEB",
    "UNCOMPRESSED",
    "producible",
    "producible_for_syntax",
    "to_explicit_vr_little_endian",
    "transcode",
    "unproducible_reason",
]

#: The uncompressed syntaxes a web service may send (PS3.18 §8.7.3.5), the default first.
NATIVE_FOR_WEB: tuple[str, ...] = (ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian)
_NOT_FOR_WEB = UNCOMPRESSED - set(NATIVE_FOR_WEB)

# pydicom's decoding default, spelled out: YBR colour is returned as RGB.
_AS_RGB: dict[str, Any] = {"as_rgb": True}

# Width of one word of each "other" VR whose raw bytes pydicom keeps in file byte order.
_WORD_BYTES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def producible_for_syntax(stored: str, /) -> frozenset[str]:
    """Every syntax an instance stored in ``stored`` may be sent in, whatever its pixels: an upper
    bound of :func:`producible`, known from the index summary alone."""
    out = set(NATIVE_FOR_WEB)
    if stored not in _NOT_FOR_WEB:
        out.add(stored)
    if can_decode(stored):
        out.update(encodable_syntaxes())
    elif stored not in UNCOMPRESSED:
        out.difference_update(NATIVE_FOR_WEB)  # nothing here can decode it: as stored only
    return frozenset(out)


def unproducible_reason(stored: str, description: PixelDescription | None, target: str, /) -> str | None:
    """Why an instance stored in ``stored`` with pixels ``description`` (None: no pixel data)
    cannot be sent in ``target``, or None when it can."""
    if target == stored and target not in _NOT_FOR_WEB:
        return None
    if target in _NOT_FOR_WEB:
        return "PS3.18 §8.7.3.5 keeps it off the web"
    if target not in producible_for_syntax(stored):
        if not can_decode(stored):
            return f"no decoder for {_name(stored)} is installed"
        return "no encoder for it is installed"
    if description is None or target in UNCOMPRESSED:
        return None
    return unencodable_reason(target, FrameProfile.decoded(description, as_rgb=True))


def producible(stored: str, attributes: Mapping[str, Any], /) -> frozenset[str]:
    """The syntaxes an instance (its stored syntax and DICOM JSON attributes) can be sent in."""
    description = PixelDescription.from_attributes(attributes)
    return frozenset(
        ts for ts in producible_for_syntax(stored) if unproducible_reason(stored, description, ts) is None
    )


def transcode(data: bytes, target: str, /) -> bytes:
    """The Part 10 file ``data`` re-encoded in the transfer syntax ``target``.

    Raises:
        ValueError: ``target`` cannot be produced from this instance (see :func:`producible`).
    """
    if target in _NOT_FOR_WEB:
        raise ValueError(f"{_name(target)} is not produced (PS3.18 §8.7.3.5)")
    ds = pydicom.dcmread(io.BytesIO(data))
    source = str(ds.file_meta.TransferSyntaxUID)
    if source == target:
        return data
    if ds.original_encoding[1] is False:  # big endian: go through little endian first
        ds = pydicom.dcmread(io.BytesIO(to_explicit_vr_little_endian(data)))
        source = ExplicitVRLittleEndian
    if "PixelData" in ds and not (source in UNCOMPRESSED and target in UNCOMPRESSED):
        if target in UNCOMPRESSED:
            _decompress(ds, source)
        else:
            _compress(ds, source, target)
    return _write(ds, target)


def to_explicit_vr_little_endian(data: bytes, /) -> bytes:
    """Return the uncompressed Part 10 file ``data`` re-encoded as Explicit VR Little Endian.

    Pixel data is not decoded: only the byte order of OW/OF/OL/OD/OV values changes for Big
    Endian sources.
    """
    ds = pydicom.dcmread(io.BytesIO(data))
    if ds.original_encoding[1] is False:  # big endian: swap the words pydicom left as raw bytes
        _swap_words(ds)
    return _write(ds, ExplicitVRLittleEndian)


def _write(ds: Dataset, target: str) -> bytes:
    ds.file_meta.TransferSyntaxUID = UID(target)
    # Some writers leave these out of the file meta; a Part 10 file must have them (PS3.10 §7.1).
    if not ds.file_meta.get("MediaStorageSOPClassUID") and "SOPClassUID" in ds:
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if not ds.file_meta.get("MediaStorageSOPInstanceUID") and "SOPInstanceUID" in ds:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for _ in ds.iterall():
        pass  # converts elements read raw; an implicit VR one left raw cannot be written explicit
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return out.getvalue()


def _decompress(ds: Dataset, source: str) -> None:
    """Replace ``ds``'s encapsulated Pixel Data by native pixels, as pydicom's ``decompress`` does
    (which trips over some odd files, e.g. a Pixel Representation the codestream contradicts)."""
    array, meta = get_decoder(UID(source)).as_array(ds, **_AS_RGB)
    bits_allocated = int(meta["bits_allocated"])
    kind = "i" if int(meta["pixel_representation"]) else "u"
    data = np.ascontiguousarray(array, dtype=f"<{kind}{max(1, bits_allocated // 8)}").tobytes()
    del array
    ds.PixelData = data + b"\0" * (len(data) & 1)
    ds["PixelData"].VR = "OB" if bits_allocated <= 8 else "OW"
    ds["PixelData"].is_undefined_length = False
    _drop_offset_tables(ds)
    ds.PhotometricInterpretation = str(meta["photometric_interpretation"])
    if int(meta["samples_per_pixel"]) > 1:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = bits_allocated


def _drop_offset_tables(ds: Dataset) -> None:
    for tag in (0x7FE00001, 0x7FE00002):  # an Extended Offset Table describes the old frames
        if tag in ds:
            del ds[tag]


def _compress(ds: Dataset, source: str, target: str) -> None:
    """Replace ``ds``'s Pixel Data by its frames encoded in ``target``, one frame per fragment."""
    fragments: list[bytes] = []
    photometric = str(ds.get("PhotometricInterpretation", ""))
    native_size = 0
    decoder = get_decoder(UID(source))
    # One decoded frame at a time: memory holds the source instance and the encoded frames.
    # (as_array per index, not iter_array, which trips over files that as_array reads fine.)
    for index in range(_number_of_frames(ds)):
        array, meta = decoder.as_array(ds, index=index, **_AS_RGB)
        profile = FrameProfile(
            rows=int(meta["rows"]),
            columns=int(meta["columns"]),
            samples_per_pixel=int(meta["samples_per_pixel"]),
            bits_allocated=int(meta["bits_allocated"]),
            bits_stored=int(meta["bits_stored"]),
            pixel_representation=int(meta["pixel_representation"]),
            photometric_interpretation=str(meta["photometric_interpretation"]),
        )
        fragment, photometric = encode_array(np.asarray(array), profile, target)
        fragments.append(fragment)
        native_size += array.size * ((profile.bits_allocated + 7) // 8)
    ds.PixelData = encapsulated_frames(fragments)
    ds["PixelData"].VR = "OB"  # PS3.5 §A.4: encapsulated Pixel Data is OB of undefined length
    ds["PixelData"].is_undefined_length = True
    _drop_offset_tables(ds)
    ds.PhotometricInterpretation = photometric
    if ds.get("SamplesPerPixel", 1) > 1:
        ds.PlanarConfiguration = 0  # PS3.5 §8.2: compressed colour is always colour-by-pixel
    if target in LOSSY:
        _mark_lossy(ds, target, native_size / max(1, sum(len(f) for f in fragments)))


def _number_of_frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def _mark_lossy(ds: Dataset, target: str, ratio: float) -> None:
    """PS3.3 §C.7.6.1.1.5: once lossy, always lossy; ratio and method values are appended in order."""
    ds.LossyImageCompression = "01"
    ratios = [str(v) for v in _values(ds.get("LossyImageCompressionRatio"))]
    methods = [str(v) for v in _values(ds.get("LossyImageCompressionMethod"))]
    ds.LossyImageCompressionRatio = [*ratios, f"{ratio:.4g}"[:16]]
    ds.LossyImageCompressionMethod = [*methods, LOSSY_METHOD[UID(target)]]


def _values(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, list | tuple | pydicom.multival.MultiValue) else [value]


def _name(transfer_syntax: str) -> str:
    name = UID(transfer_syntax).name
    return name if name != transfer_syntax else f"transfer syntax {transfer_syntax}"


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
