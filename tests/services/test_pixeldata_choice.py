"""Which transfer syntax frames go out in when the client names none (PS3.18 §8.7.3.3/§8.7.3.5)."""

from __future__ import annotations

from pydicom.uid import JPEG2000, ExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit, JPEGLosslessSV1

from dicomweb_kit.media_types import Choice, Offer
from dicomweb_kit.services.pixeldata import target_syntax


def jpeg(transfer_syntax: str | None = None) -> Choice:
    return Choice(Offer("multipart/related", part_type="image/jpeg"), transfer_syntax)


def test_the_media_types_default_when_it_can_be_produced() -> None:
    assert target_syntax([ExplicitVRLittleEndian, JPEGBaseline8Bit, JPEGLosslessSV1], jpeg()) == JPEGLosslessSV1


def test_never_lossy_from_lossless_unless_asked() -> None:
    native_to = [ExplicitVRLittleEndian, JPEGBaseline8Bit]  # the default (.70) cannot be produced
    assert target_syntax(native_to, jpeg()) is None  # -> 406, not a silently lossy frame
    assert target_syntax(native_to, jpeg(JPEGBaseline8Bit)) == JPEGBaseline8Bit  # named: fine
    j2k = Choice(Offer("multipart/related", part_type="image/jp2"), None)
    assert target_syntax([ExplicitVRLittleEndian, JPEG2000, JPEG2000Lossless], j2k) == JPEG2000Lossless


def test_lossy_frames_stay_lossy() -> None:
    # Stored lossy: any candidate is no further loss of information than the source has.
    j2k = Choice(Offer("multipart/related", part_type="image/jp2"), None)
    assert target_syntax([JPEG2000, JPEG2000Lossless], j2k) == JPEG2000
    assert target_syntax([JPEGBaseline8Bit], jpeg()) == JPEGBaseline8Bit
