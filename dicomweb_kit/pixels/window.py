"""VOI windowing to 8-bit display values (PS3.3 §C.11.2.1.2 and §C.11.2.1.3).

pydicom's ``apply_windowing`` scales to the range of Bits Stored and needs a dataset; rendering
wants 0..255 for an explicit ``window=center,width,function`` as well, so the three functions
are written out here, once, vectorised over the frame.
"""

from __future__ import annotations

from typing import Literal

import msgspec
import numpy as np

__all__ = ["VOI_FUNCTIONS", "Window", "apply_window", "min_max_window"]

VoiFunction = Literal["LINEAR", "LINEAR_EXACT", "SIGMOID"]
VOI_FUNCTIONS: tuple[VoiFunction, ...] = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


class Window(msgspec.Struct, frozen=True):
    """A window: center, width and VOI LUT Function (0028,1056); LINEAR when the data set names none."""

    center: float
    width: float
    function: VoiFunction = "LINEAR"


def apply_window(values: np.ndarray, window: Window, /, *, y_max: float = 255.0) -> np.ndarray:
    """``values`` (modality values) mapped through ``window`` onto ``[0, y_max]`` (float64).

    The caller checks the width: at least 1 for LINEAR, above 0 otherwise (PS3.3 §C.11.2.1.2.1-2).
    """
    x = np.asarray(values, dtype=np.float64)
    c, w = window.center, window.width
    if window.function == "SIGMOID":
        # §C.11.2.1.3.1: y = (ymax - ymin) / (1 + exp(-4 (x - c) / w)) + ymin
        with np.errstate(over="ignore"):
            return y_max / (1.0 + np.exp(-4.0 * (x - c) / w))
    if window.function == "LINEAR_EXACT":
        # §C.11.2.1.3.2: x <= c - w/2 -> ymin; x > c + w/2 -> ymax; else ((x - c) / w + 0.5) * (ymax - ymin) + ymin
        low, high = c - w / 2.0, c + w / 2.0
        inside = ((x - c) / w + 0.5) * y_max
    else:
        # §C.11.2.1.2.1: x <= c - 0.5 - (w-1)/2 -> ymin; x > c - 0.5 + (w-1)/2 -> ymax;
        # else ((x - (c - 0.5)) / (w-1) + 0.5) * (ymax - ymin) + ymin. A width of 1 is a threshold.
        low, high = c - 0.5 - (w - 1.0) / 2.0, c - 0.5 + (w - 1.0) / 2.0
        inside = ((x - (c - 0.5)) / (w - 1.0) + 0.5) * y_max if w > 1 else np.zeros_like(x)
    return np.where(x <= low, 0.0, np.where(x > high, y_max, inside))


def min_max_window(values: np.ndarray, /) -> Window:
    """The LINEAR_EXACT window that maps the frame's smallest value to black and its largest to
    white: the fallback when the instance carries no VOI (PS3.4 §N.2.1.1 leaves it to us)."""
    low, high = float(np.min(values)), float(np.max(values))
    width = max(high - low, 1.0)
    return Window(low + width / 2.0, width, "LINEAR_EXACT")
