"""Burned-in annotations (PS3.18 §8.3.5.1.1: ``annotation=patient,technique``).

PS3.18 leaves their content and look to the origin server. We draw the lines in white on an
opaque black box in the top left corner, sized to the image; pixels outside the box are left
exactly as rendered.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset

__all__ = ["ANNOTATIONS", "annotate", "annotation_lines"]

ANNOTATIONS = ("patient", "technique")

_PADDING = 3


def annotation_lines(ds: Dataset, kinds: Sequence[str], /) -> list[str]:
    """The text lines for the requested kinds, from the instance's attributes (empty ones left out)."""
    lines: list[str] = []
    if "patient" in kinds:
        name = str(ds.get("PatientName") or "").replace("^", " ").strip()
        lines += [name, _labelled("ID", ds.get("PatientID")), _labelled("Born", ds.get("PatientBirthDate"))]
        lines.append(_labelled("Sex", ds.get("PatientSex")))
    if "technique" in kinds:
        modality = " ".join(str(ds.get(k) or "") for k in ("Modality", "BodyPartExamined")).strip()
        lines += [modality, str(ds.get("SeriesDescription") or "").strip()]
        lines += [_labelled("kVp", ds.get("KVP")), _labelled("mAs", ds.get("Exposure"))]
        lines.append(_labelled("Slice", ds.get("SliceThickness"), "mm"))
    return [line for line in lines if line]


def _labelled(label: str, value: object, unit: str = "") -> str:
    text = str(value if value is not None else "").strip()
    if isinstance(value, float | int):  # DS and IS values: "5" rather than "5.000000"
        text = f"{float(value):g}"
    return f"{label} {text}{unit}" if text else ""


def annotate(image: Image.Image, lines: Sequence[str], /) -> Image.Image:
    """A copy of ``image`` with ``lines`` drawn on a dark box in its top left corner."""
    if not lines:
        return image
    out = image.copy()
    font = ImageFont.load_default(size=max(8, min(out.height // 20, 24)))
    draw = ImageDraw.Draw(out)
    line_height = font.getbbox("Ag")[3] + 2
    widths = [draw.textlength(line, font=font) for line in lines]
    box_width = min(out.width, int(max(widths)) + 2 * _PADDING)
    box_height = min(out.height, int(line_height) * len(lines) + 2 * _PADDING)
    black, white = (0, 255) if out.mode == "L" else ((0, 0, 0), (255, 255, 255))
    draw.rectangle((0, 0, box_width - 1, box_height - 1), fill=black)
    # Text is clipped to the box so that nothing outside it changes.
    layer = Image.new(out.mode, (box_width, box_height), black)
    layer_draw = ImageDraw.Draw(layer)
    for i, line in enumerate(lines):
        layer_draw.text((_PADDING, _PADDING + i * line_height), line, font=font, fill=white)
    out.paste(layer, (0, 0))
    return out
