"""Parsing the rendering query parameters of PS3.18 §8.3.5.1 (and §8.3.5.2 for thumbnails).

A bad value is a 400 naming the parameter. Unknown parameters are ignored (PS3.18 §8.3: an origin
server ignores query parameters it does not support). ``iccprofile`` and ``charset`` are accepted
and ignored: we render sRGB-less 8-bit images and UTF-8 text.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InvalidRequest
from .annotate import ANNOTATIONS
from .render import RenderParams
from .viewport import Viewport
from .window import VOI_FUNCTIONS, Window

__all__ = ["MAX_VIEWPORT", "parse_render_params"]

#: The largest viewport side we render: a bigger one would only cost memory and CPU.
MAX_VIEWPORT = 8192

_RENDERED = ("window", "viewport", "quality", "annotation")
_THUMBNAIL = ("viewport",)  # PS3.18 §8.3.5.2: a thumbnail takes the viewport dimensions only


def parse_render_params(items: Sequence[tuple[str, str]], /, *, thumbnail: bool = False) -> RenderParams:
    """The rendering parameters among the query's ``(name, value)`` pairs.

    Raises:
        InvalidRequest: a parameter is repeated or has a value outside its syntax.
    """
    known = _THUMBNAIL if thumbnail else _RENDERED
    values: dict[str, str] = {}
    for name, value in items:
        if name not in known:
            continue
        if name in values:
            raise InvalidRequest(f"the {name} query parameter is given more than once")
        values[name] = value.strip()
    return RenderParams(
        window=_window(values["window"]) if "window" in values else None,
        viewport=_viewport(values["viewport"], thumbnail) if "viewport" in values else None,
        quality=_quality(values["quality"]) if "quality" in values else None,
        annotation=_annotation(values["annotation"]) if "annotation" in values else (),
    )


def _window(text: str) -> Window:
    # PS3.18 §8.3.5.1.4: window = center "," width "," function; function is linear, linear-exact or sigmoid.
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (2, 3):
        raise InvalidRequest(f"window must be center,width,function; got {text!r}")
    try:
        center, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise InvalidRequest(f"window center and width must be numbers; got {text!r}") from None
    function = (parts[2] if len(parts) == 3 else "linear").upper().replace("-", "_")
    if function not in VOI_FUNCTIONS:
        raise InvalidRequest(f"window function must be linear, linear-exact or sigmoid; got {parts[2]!r}")
    if not (abs(center) < 1e12 and 0 < width < 1e12) or (function == "LINEAR" and width < 1):
        # PS3.3 §C.11.2.1.2.1: a LINEAR width is at least 1; §C.11.2.1.3: others above 0.
        raise InvalidRequest(f"window width must be {'>= 1' if function == 'LINEAR' else '> 0'}; got {text!r}")
    return Window(center, width, function)


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidRequest(f"viewport {what} must be an integer; got {text!r}") from None


def _viewport(text: str, thumbnail: bool) -> Viewport:
    # PS3.18 §8.3.5.1.3: viewport = vw "," vh [ "," [sx] "," [sy] "," [sw] "," [sh] ]
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (2, 6) or (thumbnail and len(parts) != 2):
        shape = "vw,vh" if thumbnail else "vw,vh or vw,vh,sx,sy,sw,sh"
        raise InvalidRequest(f"viewport must be {shape}; got {text!r}")
    vw, vh = _int(parts[0], "width"), _int(parts[1], "height")
    if not (0 < vw <= MAX_VIEWPORT and 0 < vh <= MAX_VIEWPORT):
        raise InvalidRequest(f"viewport width and height must be 1..{MAX_VIEWPORT}; got {text!r}")
    if len(parts) == 2:
        return Viewport(vw, vh)
    sx = _int(parts[2], "sx") if parts[2] else 0
    sy = _int(parts[3], "sy") if parts[3] else 0
    sw = _int(parts[4], "sw") if parts[4] else None
    sh = _int(parts[5], "sh") if parts[5] else None
    if sx < 0 or sy < 0:
        raise InvalidRequest(f"viewport sx and sy must not be negative; got {text!r}")
    if sw == 0 or sh == 0:
        raise InvalidRequest(f"viewport sw and sh must not be 0; got {text!r}")
    return Viewport(vw, vh, sx, sy, sw, sh)


def _quality(text: str) -> int:
    # PS3.18 §8.3.5.1.2: an integer 1..100, for lossy media types only.
    if not text.isdigit() or not 1 <= int(text) <= 100:
        raise InvalidRequest(f"quality must be an integer from 1 to 100; got {text!r}")
    return int(text)


def _annotation(text: str) -> tuple[str, ...]:
    # PS3.18 §8.3.5.1.1: a comma-separated list of keywords; servers may add their own, so a
    # keyword we do not know is ignored (PS3.18 §8.3), but an empty one is malformed.
    kinds = [part.strip().lower() for part in text.split(",")]
    if not all(kinds):
        raise InvalidRequest(f"annotation must be a comma-separated list of patient and/or technique; got {text!r}")
    return tuple(kind for kind in dict.fromkeys(kinds) if kind in ANNOTATIONS)
