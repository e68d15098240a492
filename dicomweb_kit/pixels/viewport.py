"""Source image region and viewport (PS3.18 §8.3.5.1.3).

``viewport=vw,vh[,sx,sy,sw,sh]``: the region of the rendered image whose top left corner is
(``sx``, ``sy``) and whose size is ``|sw|`` × ``|sh|`` (defaults: from the corner to the right and
bottom edges) is cut out, flipped horizontally when ``sw`` is negative and vertically when ``sh``
is, then scaled to fit within ``vw`` × ``vh`` keeping its aspect ratio. PS3.18 leaves the exact
geometry of a negative width open; we keep (``sx``, ``sy``) as the region's corner and mirror
the region, as a presentation state's flip (PS3.3 §C.10.4) would.
"""

from __future__ import annotations

import msgspec
from PIL import Image

from ..errors import InvalidRequest

__all__ = ["Viewport", "apply_viewport", "fitted_size"]


class Viewport(msgspec.Struct, frozen=True):
    """Viewport width and height, and an optional source region (``None``: its default)."""

    width: int
    height: int
    sx: int = 0
    sy: int = 0
    sw: int | None = None
    sh: int | None = None


def fitted_size(width: int, height: int, box_width: int, box_height: int, /) -> tuple[int, int]:
    """The largest size with the aspect ratio of ``width`` × ``height`` that fits the box (at least 1×1)."""
    scale = min(box_width / width, box_height / height)
    return max(1, min(box_width, round(width * scale))), max(1, min(box_height, round(height * scale)))


def apply_viewport(image: Image.Image, viewport: Viewport, /) -> Image.Image:
    """``image`` cropped to the viewport's source region, flipped as it says, and scaled to fit it.

    Raises:
        InvalidRequest: the source region starts outside the image.
    """
    if viewport.sx >= image.width or viewport.sy >= image.height:
        raise InvalidRequest(
            f"the source region starts at ({viewport.sx}, {viewport.sy}), outside the"
            f" {image.width}x{image.height} image"
        )
    sw = viewport.sw if viewport.sw is not None else image.width - viewport.sx
    sh = viewport.sh if viewport.sh is not None else image.height - viewport.sy
    right = min(image.width, viewport.sx + abs(sw))
    bottom = min(image.height, viewport.sy + abs(sh))
    region = image.crop((viewport.sx, viewport.sy, right, bottom))
    if sw < 0:
        region = region.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if sh < 0:
        region = region.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    size = fitted_size(region.width, region.height, viewport.width, viewport.height)
    if size == region.size:
        return region
    return region.resize(size, Image.Resampling.LANCZOS if size[0] < region.width else Image.Resampling.BILINEAR)
