"""The Image Pixel Module attributes (PS3.3 §C.7.6.3) that say how to read one frame's bytes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

__all__ = ["PixelDescription"]


def _first(attributes: Mapping[str, Any], tag: str) -> Any:
    values = attributes.get(tag, {}).get("Value")
    return values[0] if values else None


class PixelDescription(msgspec.Struct, frozen=True, kw_only=True):
    """What a decoder needs to turn one frame's bytes into pixels.

    Read from the instance's DICOM JSON attributes (the record's ``attributes``), so it never needs
    the blob. ``frame_length`` is the size of one native (uncompressed) frame in bytes.
    """

    rows: int
    columns: int
    samples_per_pixel: int = 1
    bits_allocated: int = 16
    bits_stored: int = 16
    pixel_representation: int = 0
    photometric_interpretation: str = "MONOCHROME2"
    planar_configuration: int = 0
    number_of_frames: int = 1

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, Any], /) -> PixelDescription | None:
        """The description of an instance's pixels, or ``None`` when it has no image pixels."""
        rows, columns = _first(attributes, "00280010"), _first(attributes, "00280011")
        bits_allocated = _first(attributes, "00280100")
        if not rows or not columns or not bits_allocated:
            return None
        frames = _first(attributes, "00280008")
        try:
            number_of_frames = max(1, int(frames)) if frames is not None else 1
        except (TypeError, ValueError):
            number_of_frames = 1
        return cls(
            rows=int(rows),
            columns=int(columns),
            samples_per_pixel=int(_first(attributes, "00280002") or 1),
            bits_allocated=int(bits_allocated),
            bits_stored=int(_first(attributes, "00280101") or bits_allocated),
            pixel_representation=int(_first(attributes, "00280103") or 0),
            photometric_interpretation=str(_first(attributes, "00280004") or "MONOCHROME2").strip(),
            planar_configuration=int(_first(attributes, "00280006") or 0),
            number_of_frames=number_of_frames,
        )

    @property
    def frame_length(self) -> int:
        """Bytes of one native frame; 1-bit data is packed across frames (PS3.5 §8.1.1), so this
        rounds up and callers of bit-packed data must use :meth:`frame_bit_offset`."""
        samples = self.rows * self.columns * self.samples_per_pixel
        if self.photometric_interpretation == "YBR_FULL_422":
            samples = samples * 2 // 3  # two chroma samples shared by each pair of pixels
        return (samples * self.bits_allocated + 7) // 8

    def frame_bit_offset(self, index: int, /) -> int:
        """Bit offset of frame ``index`` (0-based) from the start of the native pixel data."""
        samples = self.rows * self.columns * self.samples_per_pixel
        if self.photometric_interpretation == "YBR_FULL_422":
            samples = samples * 2 // 3
        return index * samples * self.bits_allocated

    def decoder_options(self) -> dict[str, Any]:
        """Keyword options for ``pydicom.pixels`` decoders given a bare buffer instead of a dataset."""
        return {
            "rows": self.rows,
            "columns": self.columns,
            "samples_per_pixel": self.samples_per_pixel,
            "bits_allocated": self.bits_allocated,
            "bits_stored": self.bits_stored,
            "pixel_representation": self.pixel_representation,
            "photometric_interpretation": self.photometric_interpretation,
            "planar_configuration": self.planar_configuration,
            "number_of_frames": self.number_of_frames,
            "pixel_keyword": "PixelData",
        }
