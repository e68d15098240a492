"""Reading the header of a DICOM Part 10 file (PS3.10 §7) from the bytes seen so far.

STOW-RS streams each instance to the blob store and keeps only its first bytes; this module
parses the header (everything before Pixel Data) from that prefix, and says when the prefix is
too short so the caller can wait for more.
"""

from __future__ import annotations

import io
import zlib

import msgspec
import pydicom
import pydicom.uid
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

__all__ = ["HeaderIncomplete", "NotPart10", "Part10Header", "has_part10_prefix", "parse_header", "to_part10"]

_PIXEL_DATA_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}


class HeaderIncomplete(Exception):
    """The prefix ends inside the header: feed more bytes and try again."""


class NotPart10(ValueError):
    """The bytes are not a readable DICOM Part 10 file."""


class Part10Header(msgspec.Struct, frozen=True):
    """The parsed header of one instance.

    Attributes:
        dataset: every data element before Pixel Data (file meta in ``dataset.file_meta``).
        transfer_syntax_uid: (0002,0010) of the file meta.
        pixel_data_vr: VR of the Pixel Data element that follows the header, ``None`` if none does.
        header_length: offset of the Pixel Data element (the end of the parsed header).
    """

    dataset: Dataset
    transfer_syntax_uid: str
    pixel_data_vr: str | None
    header_length: int


class _Prefix(io.RawIOBase):
    """A read-only file over the prefix that raises HeaderIncomplete instead of returning short reads."""

    def __init__(self, data: bytes | bytearray | memoryview, complete: bool) -> None:
        self._data = memoryview(data)
        self._complete = complete
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._data)}[whence]
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._data) if size is None or size < 0 else self._pos + size
        if end > len(self._data) and not self._complete:
            raise HeaderIncomplete
        chunk = bytes(self._data[self._pos : end])
        self._pos += len(chunk)
        return chunk

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def parse_header(prefix: bytes | bytearray | memoryview, /, *, complete: bool) -> Part10Header:
    """Parse the Part 10 header in ``prefix``.

    Args:
        prefix: the first bytes of the file.
        complete: ``prefix`` is the whole file (a short read is then the real end of the file).

    Raises:
        HeaderIncomplete: ``prefix`` ends inside the header and ``complete`` is false.
        NotPart10: not a Part 10 file (no preamble and ``DICM``, no Transfer Syntax UID) or unreadable.
    """
    if len(prefix) >= 132 and bytes(prefix[128:132]) != b"DICM":
        raise NotPart10("not a DICOM Part 10 file: no 'DICM' prefix at offset 128 (PS3.10 §7.1)")
    fp = _Prefix(prefix, complete)
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
    except HeaderIncomplete:
        raise
    except InvalidDicomError as exc:
        raise NotPart10(f"not a DICOM Part 10 file: {exc}") from exc
    except Exception as exc:  # pydicom raises many kinds on corrupt input
        raise NotPart10(f"unreadable DICOM data: {type(exc).__name__}: {exc}") from exc
    transfer_syntax = ds.file_meta.get("TransferSyntaxUID")
    if not transfer_syntax:
        raise NotPart10("the file meta information has no Transfer Syntax UID (0002,0010)")
    header_length = fp.tell()
    if transfer_syntax == pydicom.uid.DeflatedExplicitVRLittleEndian:
        # pydicom inflated the data set into a buffer of its own: look for Pixel Data there.
        pixel_data_vr = _deflated_pixel_data_vr(prefix, ds)
    else:
        pixel_data_vr = _pixel_data_vr(prefix, header_length, ds)
    return Part10Header(
        dataset=ds,
        transfer_syntax_uid=str(transfer_syntax),
        pixel_data_vr=pixel_data_vr,
        header_length=header_length,
    )


def _deflated_pixel_data_vr(prefix: bytes | bytearray | memoryview, ds: Dataset) -> str | None:
    """The VR of the Pixel Data element of a deflated data set (PS3.5 §A.5), if it has one."""
    group_length = ds.file_meta.get("FileMetaInformationGroupLength")
    if group_length is None:
        return None
    start = 132 + 12 + int(group_length)  # preamble, DICM, (0002,0000) element, file meta
    try:
        inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(bytes(prefix[start:]))
        fp = _Prefix(inflated, complete=True)
        inner = pydicom.dcmread(fp, force=True, stop_before_pixels=True)
    except Exception:  # a deflated stream we cannot follow: no pixel data as far as we can tell
        return None
    return _pixel_data_vr(inflated, fp.tell(), inner)


def _pixel_data_vr(prefix: bytes | bytearray | memoryview, offset: int, ds: Dataset) -> str | None:
    """The VR of the Pixel Data element at ``offset``, if the header stopped at one."""
    head = bytes(prefix[offset : offset + 6])
    if len(head) < 4:
        return None
    little = ds.original_encoding[1] is not False
    group, element = (int.from_bytes(head[i : i + 2], "little" if little else "big") for i in (0, 2))
    if (group << 16 | element) not in _PIXEL_DATA_TAGS:
        return None
    implicit = ds.original_encoding[0] is True
    if implicit:
        return "OW"  # PS3.5 §A.1: Pixel Data in Implicit VR Little Endian is OW
    vr = head[4:6].decode("ascii", "replace")
    return vr if vr in {"OB", "OW", "OF", "OD"} else "OB"


def has_part10_prefix(head: bytes | bytearray | memoryview, /) -> bool:
    """Whether the first 132 bytes carry the 128-byte preamble and ``DICM`` (PS3.10 §7.1)."""
    return len(head) >= 132 and bytes(head[128:132]) == b"DICM"


def to_part10(data: bytes | bytearray, /) -> bytes:
    """Rewrite a dataset sent without the Part 10 preamble (and maybe without file meta) as Part 10.

    Real clients do this: dicomweb-client writes ``pydicom.dcmwrite(b, ds)`` for a dataset that
    has no preamble. The transfer syntax is the file meta's if present, else the one pydicom
    detects from the data (implicit or explicit VR little endian).

    Raises:
        NotPart10: the bytes are not a readable DICOM dataset.
    """
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        ds.ensure_file_meta()
        meta = ds.file_meta
        if not meta.get("TransferSyntaxUID"):
            implicit, little = ds.original_encoding
            if implicit is None:
                raise NotPart10("not a DICOM dataset: no data elements could be read")
            meta.TransferSyntaxUID = (
                pydicom.uid.ImplicitVRLittleEndian
                if implicit
                else (pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian)
            )
        if not meta.get("MediaStorageSOPClassUID") and "SOPClassUID" in ds:
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
        if not meta.get("MediaStorageSOPInstanceUID") and "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if len(ds) == 0:
            raise NotPart10("not a DICOM dataset: no data elements could be read")
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
    except NotPart10:
        raise
    except Exception as exc:  # pydicom raises many kinds on garbage
        raise NotPart10(f"not a DICOM dataset: {type(exc).__name__}: {exc}") from exc
    return out.getvalue()
