"""Encoding rendered images in the rendered media types of PS3.18 §8.7.4 (Table 8.7.4-1).

Single frame images: image/jpeg (the default), image/png, image/gif, and image/jp2 when Pillow
was built with OpenJPEG. Multi-frame images: an animated image/gif (our default), and video/mp4
(H.264) and video/mpeg (MPEG-2) when PyAV is installed (the ``video`` extra). What cannot be
produced here is not offered, so negotiation answers 406 rather than failing later.
"""

from __future__ import annotations

import functools
import importlib
import io
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from PIL import Image, features

__all__ = [
    "DEFAULT_QUALITY",
    "encode_frames",
    "encode_image",
    "image_media_types",
    "video_media_types",
]

#: JPEG quality when the request gives none (PS3.18 §8.3.5.1.2 leaves the default to us).
DEFAULT_QUALITY = 90

# Media type -> (PyAV container format, encoder).
_VIDEO = {"video/mp4": ("mp4", "libx264"), "video/mpeg": ("mpeg", "mpeg2video")}


@functools.cache
def image_media_types() -> tuple[str, ...]:
    """Single-frame media types we can encode, the default first."""
    types = ["image/jpeg", "image/png", "image/gif"]
    if features.check("jpg_2000"):
        types.append("image/jp2")
    return tuple(types)


@functools.cache
def video_media_types() -> tuple[str, ...]:
    """Video media types we can encode: none without PyAV."""
    try:
        av: Any = importlib.import_module("av")
    except ImportError:
        return ()
    found = []
    for media_type, (_, encoder) in _VIDEO.items():
        try:
            av.codec.Codec(encoder, "w")
        except Exception:  # an FFmpeg build without this encoder
            continue
        found.append(media_type)
    return tuple(found)


def encode_image(image: Image.Image, media_type: str, /, *, quality: int | None = None) -> bytes:
    """One image in ``media_type`` (one of :func:`image_media_types`); ``quality`` applies to lossy types."""
    out = io.BytesIO()
    if media_type == "image/jpeg":
        image.save(out, "JPEG", quality=quality or DEFAULT_QUALITY)
    elif media_type == "image/png":
        image.save(out, "PNG")
    elif media_type == "image/gif":
        image.save(out, "GIF")
    elif media_type == "image/jp2":
        options: dict[str, Any] = {}
        if quality is not None and quality < 100:
            # Lossy (irreversible) at a compression ratio from 1:1 (quality 100) to 50:1 (quality 1).
            options = {"irreversible": True, "quality_mode": "rates", "quality_layers": [1 + (100 - quality) / 2]}
        image.save(out, "JPEG2000", no_jp2=False, **options)
    else:
        raise ValueError(f"cannot encode an image as {media_type}")
    return out.getvalue()


def encode_frames(
    images: Sequence[Image.Image], media_type: str, /, *, frame_rate: float, quality: int | None = None
) -> bytes:
    """Several frames as one animated image/gif, or a video (one of :func:`video_media_types`)."""
    if media_type == "image/gif":
        out = io.BytesIO()
        duration = max(20, round(1000 / frame_rate))  # ms per frame; browsers clamp shorter ones
        images[0].save(out, "GIF", save_all=True, append_images=list(images[1:]), duration=duration, loop=0)
        return out.getvalue()
    if media_type in _VIDEO:
        return _video(images, media_type, frame_rate, quality)
    raise ValueError(f"cannot encode frames as {media_type}")


def _video(images: Sequence[Image.Image], media_type: str, frame_rate: float, quality: int | None) -> bytes:
    av: Any = importlib.import_module("av")  # optional: the `video` extra; untyped here on purpose

    container_format, encoder = _VIDEO[media_type]
    # 4:2:0 chroma needs even sides; pad by repeating the last row/column rather than scaling.
    width, height = images[0].width + images[0].width % 2, images[0].height + images[0].height % 2
    repeats = 1
    if encoder == "libx264":
        rate = Fraction(frame_rate).limit_denominator(1000)
    else:
        # MPEG-2 allows only a few frame rates (ISO/IEC 13818-2 Table 6-4): play at 25 per second
        # and show each frame as many times as keeps the cine's own speed.
        rate, repeats = Fraction(25), max(1, round(25 / frame_rate))
    out = io.BytesIO()
    with av.open(out, "w", format=container_format) as container:
        stream = container.add_stream(encoder, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if encoder == "libx264":
            # Constant quality: CRF 51 (worst) .. 0 (lossless); quality 100 is near-lossless.
            crf = 23 if quality is None else round(51 - quality * 0.5)
            stream.options = {"crf": str(crf)}
        elif quality is not None:
            stream.bit_rate = int(width * height * 25 * (0.05 + quality / 100))
        for image in images:
            frame = av.VideoFrame.from_image(_padded(image.convert("RGB"), width, height))
            for _ in range(repeats):
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def _padded(image: Image.Image, width: int, height: int) -> Image.Image:
    if image.size == (width, height):
        return image
    canvas = Image.new(image.mode, (width, height))
    canvas.paste(image, (0, 0))
    if width > image.width:
        canvas.paste(image.crop((image.width - 1, 0, image.width, image.height)), (image.width, 0))
    if height > image.height:
        canvas.paste(canvas.crop((0, image.height - 1, width, image.height)), (0, image.height))
    return canvas
