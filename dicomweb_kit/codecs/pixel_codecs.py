"""Decoding and encoding single frames between transfer syntaxes (PS3.5 §8, Annex A.4).

The frame-level half of transcoding: WADO-RS frames, rendered images and thumbnails go through
these functions. Codecs come from pydicom's plugin system; what the installed plugins cannot
produce is simply not offered, so negotiation answers 406 rather than failing later.
"""

from __future__ import annotations

import numpy as np
from pydicom.pixels import get_decoder
from pydicom.uid import UID, ExplicitVRLittleEndian

from ..pixels.description import PixelDescription
from .transcode import UNCOMPRESSED

__all__ = ["convert_frame", "decode_frame", "frame_syntaxes"]


def frame_syntaxes(stored_ts: str, description: PixelDescription, /) -> tuple[str, ...]:
    """Transfer syntaxes one frame of an instance stored in ``stored_ts`` can be sent in, the
    stored one first. Native frames are the same bytes in every uncompressed syntax, so they are
    offered as Explicit VR Little Endian."""
    if stored_ts in UNCOMPRESSED:
        return (ExplicitVRLittleEndian,)
    return (stored_ts,)


def convert_frame(data: bytes, description: PixelDescription, source_ts: str, target_ts: str, /) -> bytes:
    """One frame's bytes re-encoded from ``source_ts`` to ``target_ts`` (one of :func:`frame_syntaxes`)."""
    if source_ts == target_ts or (source_ts in UNCOMPRESSED and target_ts in UNCOMPRESSED):
        return data
    raise ValueError(f"cannot convert a frame from {source_ts} to {target_ts}")


def decode_frame(data: bytes, description: PixelDescription, source_ts: str, /) -> np.ndarray:
    """One frame as an array (rows, columns[, samples]), exactly as stored (no LUTs applied)."""
    options = {**description.decoder_options(), "number_of_frames": 1}
    array, _ = get_decoder(UID(source_ts)).as_array(data, index=0, transfer_syntax_uid=UID(source_ts), **options)
    return array
