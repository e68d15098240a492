"""WADO-RS bulk data and pixel data (PS3.18 §10.4.1.1.5, payloads §10.4.3.3.5-6).

The BulkDataURIs of our metadata name attribute paths (``7FE00010``, ``00540016/0/00181072``; see
``services/ingest.py``). Pixel Data is read with the frame layout (byte ranges); any other bulk
data value is taken from the instance's header, read from the blob up to the pixel data and
never beyond (``services.frames.read_header``).

Values are sent in Little Endian byte order (PS3.18 §8.7.3.3.1: "Uncompressed Bulk Data is
encoded as a stream of uncompressed bytes (octets) in Little Endian byte order"): words of
OW/OF/OL/OD/OV values of Explicit VR Big Endian instances are swapped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import anyio
import msgspec
import numpy as np
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from ..codecs.dicom_json import BINARY_VRS
from ..errors import ResourceNotFound
from ..index import InstanceRecord
from ..media_types import EXPLICIT_VR_BE
from ..resources import ResourceKey
from .frames import PixelSource, pixel_source, read_header

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = ["PIXEL_PATHS", "BulkValue", "bulk_paths", "header_value", "open_bulk", "parse_path"]

#: Top-level Pixel Data, Float Pixel Data, Double Float Pixel Data (PS3.18 §10.4.3.3.6).
PIXEL_PATHS: Final = frozenset({"7FE00010", "7FE00008", "7FE00009"})
_PATH = re.compile(r"[0-9A-Fa-f]{8}(?:/(?:0|[1-9][0-9]{0,8})/[0-9A-Fa-f]{8})*")
_WORD_BYTES: Final = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
_MAX_DEPTH: Final = 16


class BulkValue(msgspec.Struct, frozen=True):
    """One bulk data resource: a pixel data value (located, read by range) or another value (in memory)."""

    record: InstanceRecord
    path: str
    pixels: PixelSource | None = None
    value: bytes | None = None


def parse_path(path: str, /) -> list[int | str]:
    """An attribute path as tag, item index, tag, ... (tags as ints, indexes as ``"n"``)."""
    path = path.strip("/")
    if not _PATH.fullmatch(path) or path.count("/") > 2 * _MAX_DEPTH:
        raise ResourceNotFound(
            f"no bulk data at {path[:100]!r}: not an attribute path like 7FE00010 or 00540016/0/00181072"
        )
    return [int(piece, 16) if i % 2 == 0 else piece for i, piece in enumerate(path.split("/"))]


async def open_bulk(kit: DicomWeb, key: ResourceKey, path: str, /) -> BulkValue:
    """The bulk data value at ``path`` of instance ``key``; 404 when there is none."""
    steps = parse_path(path)
    record = await kit.index.get(key)
    if record is None:
        raise ResourceNotFound(f"no instance {key} is stored here")
    canonical = path.strip("/").upper()
    if canonical in PIXEL_PATHS:
        source = await pixel_source(kit, record)
        if source is None or f"{source.layout.tag:08X}" != canonical:
            raise ResourceNotFound(f"instance {key.instance} has no {canonical} pixel data")
        return BulkValue(record, canonical, pixels=source)
    header, _ = await read_header(kit, record)
    value = await anyio.to_thread.run_sync(header_value, header.dataset, steps, header.transfer_syntax_uid)
    if value is None:
        raise ResourceNotFound(f"instance {key.instance} has no bulk data at {canonical}")
    return BulkValue(record, canonical, value=value)


def header_value(ds: Dataset, steps: list[int | str], transfer_syntax_uid: str) -> bytes | None:
    """The Little Endian bytes of the binary value at ``steps`` in ``ds``, or ``None``."""
    current: Any = ds
    for i, step in enumerate(steps):
        if i % 2 == 0:
            assert isinstance(step, int)
            if not isinstance(current, Dataset) or Tag(step) not in current:
                return None
            element = current[step]
            if i == len(steps) - 1:
                if element.VR not in BINARY_VRS or not isinstance(element.value, bytes | bytearray):
                    return None  # not bulk data (PS3.18 §F.2.7: only octet-stream VRs are)
                return _little_endian(bytes(element.value), str(element.VR), transfer_syntax_uid)
            if element.VR != "SQ":
                return None
            current = element.value
        else:
            index = int(step)
            if index >= len(current):
                return None
            current = current[index]
    return None


def _little_endian(value: bytes, vr: str, transfer_syntax_uid: str) -> bytes:
    width = _WORD_BYTES.get(vr, 1)
    if width == 1 or transfer_syntax_uid != EXPLICIT_VR_BE:
        return value
    usable = len(value) - len(value) % width
    swapped: bytes = np.frombuffer(value, dtype=f">u{width}", count=usable // width).astype(f"<u{width}").tobytes()
    return swapped + value[usable:]


def bulk_paths(attributes: Mapping[str, Any], /) -> Iterator[str]:
    """The attribute paths of every BulkDataURI in an instance's DICOM JSON, in document order."""
    for key, attribute in attributes.items():
        if not isinstance(attribute, dict):
            continue
        if "BulkDataURI" in attribute:
            yield key
        elif attribute.get("vr") == "SQ":
            for index, item in enumerate(attribute.get("Value") or ()):
                if isinstance(item, dict):
                    for inner in bulk_paths(item):
                        yield f"{key}/{index}/{inner}"
