"""The rendering pipeline: one decoded frame and its instance's attributes → an 8-bit image.

PS3.18 §8.3.5.1 applies the rendering parameters "as if they were a Presentation State", in the
order of PS3.4 §N.2 (Pixel Transformation Sequence): Modality LUT, VOI LUT (the ``window``
parameter, else the instance's own VOI, else the frame's range), then the Presentation LUT
(MONOCHROME1 inverts); colour images go to RGB. The source region and viewport come after that
(:mod:`.viewport`), and annotations last (:mod:`.annotate`).
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi, convert_color_space

from .annotate import annotate, annotation_lines
from .viewport import Viewport, apply_viewport
from .window import VOI_FUNCTIONS, Window, apply_window, min_max_window

__all__ = ["RenderParams", "display_array", "render_image", "voi_window"]

_YBR = ("YBR_FULL", "YBR_FULL_422")


class RenderParams(msgspec.Struct, frozen=True, kw_only=True):
    """The rendering query parameters of PS3.18 §8.3.5.1, parsed (see :mod:`.params`)."""

    window: Window | None = None
    viewport: Viewport | None = None
    quality: int | None = None
    annotation: tuple[str, ...] = ()


def render_image(
    frame: np.ndarray,
    ds: Dataset,
    params: RenderParams,
    /,
    *,
    photometric: str | None = None,
    frame_index: int = 0,
) -> Image.Image:
    """``frame`` rendered per ``params``: display values, then source region and viewport, then annotations."""
    pixels = display_array(frame, ds, photometric=photometric, window=params.window, frame_index=frame_index)
    image = Image.fromarray(pixels)
    if params.viewport is not None:
        image = apply_viewport(image, params.viewport)
    if params.annotation:
        image = annotate(image, annotation_lines(ds, params.annotation))
    return image


def display_array(
    frame: np.ndarray,
    ds: Dataset,
    /,
    *,
    photometric: str | None = None,
    window: Window | None = None,
    frame_index: int = 0,
) -> np.ndarray:
    """``frame`` as 8-bit display values: ``(rows, columns)`` grey or ``(rows, columns, 3)`` RGB.

    ``photometric`` is the Photometric Interpretation of ``frame`` as decoded, when it differs
    from the data set's (pydicom's decoders turn YBR into RGB by default). ``window`` overrides
    the instance's VOI (grey images only; PS3.18 §8.3.5.1.4).
    """
    photometric = (photometric or str(ds.get("PhotometricInterpretation", "MONOCHROME2"))).strip().upper()
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        grey = _grey(frame, ds, window, frame_index)
        return 255 - grey if photometric == "MONOCHROME1" else grey
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(frame, ds)
        return _to_uint8(rgb, 16 if rgb.dtype.itemsize > 1 else 8)
    if photometric in _YBR:
        frame = convert_color_space(frame, "YBR_FULL", "RGB")
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"cannot render {photometric} pixels of shape {frame.shape}")
    return _to_uint8(frame, int(ds.get("BitsStored") or 8))


def voi_window(ds: Dataset, /, *, frame_index: int = 0) -> Window | None:
    """The instance's first Window Center/Width pair (0028,1050/1051) and VOI LUT Function
    (0028,1056), from the frame's functional groups for enhanced multi-frame images; ``None`` if absent."""
    source = _functional(ds, frame_index, "FrameVOILUTSequence") or ds
    center, width = _first(source.get("WindowCenter")), _first(source.get("WindowWidth"))
    if center is None or width is None:
        return None
    function = str(source.get("VOILUTFunction") or "LINEAR").strip().upper()
    if function not in VOI_FUNCTIONS:
        function = "LINEAR"
    width = float(width)
    if width <= 0 or (function == "LINEAR" and width < 1):
        return None  # an invalid stored window is ignored rather than failing the render
    return Window(float(center), width, function)  # type: ignore[arg-type]


#: Integer frames whose stored values span at most this many codes are rendered through a lookup
#: table: the modality and VOI transforms are functions of the stored value alone, so computing
#: them once per distinct code and indexing is exact, and several times faster than evaluating
#: the float formulas for every pixel (a 512x512 CT: 1 ms instead of 6).
_LUT_MAX_CODES = 1 << 17


def _grey(frame: np.ndarray, ds: Dataset, window: Window | None, frame_index: int) -> np.ndarray:
    if frame.ndim != 2:
        raise ValueError(f"cannot render a greyscale frame of shape {frame.shape}")
    if frame.dtype.kind in "iu" and frame.size:
        low, high = int(frame.min()), int(frame.max())
        if high - low < min(_LUT_MAX_CODES, frame.size):
            codes = np.arange(low, high + 1, dtype=np.int64).astype(frame.dtype)[np.newaxis, :]
            lut = _grey_values(codes, ds, window, frame_index)[0]
            if frame.dtype.itemsize <= 2:
                # Index by the stored bits themselves: signed values through their unsigned view.
                unsigned = frame.view(f"u{frame.dtype.itemsize}")
                table = np.zeros(1 << (8 * frame.dtype.itemsize), np.uint8)
                table[codes[0].view(unsigned.dtype)] = lut
                return np.take(table, unsigned)
            return np.take(lut, frame.astype(np.intp) - low)
    return _grey_values(frame, ds, window, frame_index)


def _grey_values(frame: np.ndarray, ds: Dataset, window: Window | None, frame_index: int) -> np.ndarray:
    values = _modality(frame, ds, frame_index)
    if window is None:
        window = voi_window(ds, frame_index=frame_index)
    if window is None and "VOILUTSequence" in ds:
        # LUTs are indexed by integers; pydicom warns and misreads float input.
        lut_values = apply_voi(np.rint(values).astype(np.int64), ds, index=0)
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2] or 16)  # PS3.3 §C.11.2.1.1: bits per LUT entry
        return _to_uint8(lut_values, bits)
    display = apply_window(values, window or min_max_window(values))
    return np.floor(display + 0.5).astype(np.uint8)


def _modality(frame: np.ndarray, ds: Dataset, frame_index: int) -> np.ndarray:
    """PS3.3 §C.11.1: Rescale Slope/Intercept or the Modality LUT Sequence (pydicom applies
    either); enhanced multi-frame images keep the rescale in their Pixel Value Transformation."""
    group = _functional(ds, frame_index, "PixelValueTransformationSequence")
    if group is not None and "RescaleSlope" not in ds and "ModalityLUTSequence" not in ds:
        slope, intercept = float(group.get("RescaleSlope") or 1), float(group.get("RescaleIntercept") or 0)
        return np.asarray(frame, dtype=np.float64) * slope + intercept
    return np.asarray(apply_modality_lut(frame, ds), dtype=np.float64)


def _functional(ds: Dataset, frame_index: int, sequence: str) -> Dataset | None:
    """The item of ``sequence`` for one frame (Per-Frame first, then Shared Functional Groups)."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame_index), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items and len(items) > index and sequence in items[index] and items[index][sequence].value:
            item: Dataset = items[index][sequence][0]
            return item
    return None


def _first(value: Any) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, str | bytes) or not hasattr(value, "__len__"):
        return value
    return value[0] if len(value) else None


def _to_uint8(values: np.ndarray, bits: int) -> np.ndarray:
    """Scale unsigned ``bits``-bit values to 0..255 (rounded)."""
    if bits == 8 and values.dtype == np.uint8:
        return values
    top = float((1 << max(1, bits)) - 1)
    scaled = np.clip(np.asarray(values, dtype=np.float64), 0, top) * (255.0 / top)
    return np.floor(scaled + 0.5).astype(np.uint8)
