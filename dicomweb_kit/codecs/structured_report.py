"""Readable renderings of a Structured Report's content tree (PS3.3 §C.17.3) for the rendered
resource of an SR instance (PS3.18 §8.7.4, Text category): text/html, text/plain and text/xml.

Each content item shows its relationship, concept name, value (with units for NUM) and its
children. PS3.18 leaves the presentation to the origin server; the XML form is our own simple
vocabulary (``<report>``, ``<item>``), not a DICOM-defined schema.
"""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import msgspec
from pydicom.dataset import Dataset

__all__ = ["SR_MEDIA_TYPES", "ContentItem", "content_tree", "is_structured_report", "render_report"]

#: Media types of the Text category, the default first (PS3.18 Table 8.7.4-1).
SR_MEDIA_TYPES = ("text/html", "text/plain", "text/xml")

# PS3.4 Annex B.5: every SR Storage SOP Class (Basic Text, Enhanced, Comprehensive, Key Object
# Selection, CAD, dose reports...) is under this root.
_SR_ROOT = "1.2.840.10008.5.1.4.1.1.88."
_MAX_DEPTH = 64  # deeper trees are cut off: a real report is a few levels deep


def is_structured_report(sop_class_uid: str, /) -> bool:
    """Whether ``sop_class_uid`` is an SR Storage SOP Class."""
    return sop_class_uid.startswith(_SR_ROOT)


class ContentItem(msgspec.Struct, frozen=True):
    """One node of the content tree, reduced to text."""

    relationship: str
    value_type: str
    concept: str
    value: str
    children: tuple[ContentItem, ...] = ()


def _code(ds: Dataset, keyword: str) -> str:
    items = ds.get(keyword)
    if not items:
        return ""
    item = items[0]
    return str(item.get("CodeMeaning") or item.get("CodeValue") or item.get("LongCodeValue") or "")


def _value(item: Dataset) -> str:
    kind = str(item.get("ValueType") or "")
    if kind == "TEXT":
        return str(item.get("TextValue") or "")
    if kind == "CODE":
        return _code(item, "ConceptCodeSequence")
    if kind == "NUM":
        measured = item.get("MeasuredValueSequence")
        if not measured:
            return _code(item, "NumericValueQualifierCodeSequence")
        number = str(measured[0].get("NumericValue") or "")
        units = measured[0].get("MeasurementUnitsCodeSequence")
        unit = str(units[0].get("CodeValue") or "") if units else ""
        return f"{number} {unit}".strip() if unit not in ("", "1") else number
    if kind in ("DATE", "TIME", "DATETIME"):
        return str(item.get({"DATE": "Date", "TIME": "Time", "DATETIME": "DateTime"}[kind]) or "")
    if kind == "PNAME":
        return str(item.get("PersonName") or "").replace("^", " ").strip()
    if kind == "UIDREF":
        return str(item.get("UID") or "")
    if kind in ("COMPOSITE", "IMAGE", "WAVEFORM"):
        refs = item.get("ReferencedSOPSequence")
        return f"SOP Instance {refs[0].get('ReferencedSOPInstanceUID', '')}" if refs else ""
    if kind in ("SCOORD", "SCOORD3D"):
        data = item.get("GraphicData") or []
        return f"{item.get('GraphicType', '')} ({len(data)} coordinates)"
    if kind == "TCOORD":
        return str(item.get("TemporalRangeType") or "")
    if "ReferencedContentItemIdentifier" in item:
        return "see item " + ".".join(str(n) for n in item.ReferencedContentItemIdentifier)
    return ""


def content_tree(ds: Dataset, /) -> ContentItem:
    """The document's root container and everything under it."""

    def walk(item: Dataset, depth: int) -> ContentItem:
        children: tuple[ContentItem, ...] = ()
        if depth < _MAX_DEPTH:
            children = tuple(walk(child, depth + 1) for child in item.get("ContentSequence") or ())
        return ContentItem(
            relationship=str(item.get("RelationshipType") or ""),
            value_type=str(item.get("ValueType") or ""),
            concept=_code(item, "ConceptNameCodeSequence"),
            value=_value(item),
            children=children,
        )

    return walk(ds, 0)


def _header(ds: Dataset) -> list[tuple[str, str]]:
    fields = [
        ("Patient", str(ds.get("PatientName") or "").replace("^", " ").strip()),
        ("Patient ID", str(ds.get("PatientID") or "")),
        ("Study date", str(ds.get("StudyDate") or "")),
        ("Completion", str(ds.get("CompletionFlag") or "")),
        ("Verification", str(ds.get("VerificationFlag") or "")),
    ]
    return [(name, value) for name, value in fields if value]


def render_report(ds: Dataset, media_type: str, /) -> bytes:
    """The report in ``media_type`` (one of :data:`SR_MEDIA_TYPES`), UTF-8."""
    root = content_tree(ds)
    if media_type == "text/html":
        return _html(ds, root).encode()
    if media_type == "text/plain":
        return _plain(ds, root).encode()
    if media_type == "text/xml":
        return _xml(ds, root)
    raise ValueError(f"cannot render a report as {media_type}")


def _plain(ds: Dataset, root: ContentItem) -> str:
    lines = [root.concept or "Structured Report", ""]
    lines += [f"{name}: {value}" for name, value in _header(ds)]
    lines.append("")

    def walk(item: ContentItem, depth: int) -> Iterator[str]:
        label = ": ".join(text for text in (item.concept, item.value) if text) or item.value_type
        indent = "  " * depth
        yield indent + label.replace("\n", "\n" + indent + "  ")  # multi-line TEXT stays indented
        for child in item.children:
            yield from walk(child, depth + 1)

    for child in root.children:
        lines += walk(child, 0)
    return "\n".join(lines) + "\n"


def _html(ds: Dataset, root: ContentItem) -> str:
    esc = html.escape
    title = esc(root.concept or "Structured Report")
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head><body>',
        f"<h1>{title}</h1>",
        "<dl>",
    ]
    parts += [f"<dt>{esc(name)}</dt><dd>{esc(value)}</dd>" for name, value in _header(ds)]
    parts.append("</dl>")

    def walk(items: tuple[ContentItem, ...]) -> Iterator[str]:
        yield "<ul>"
        for item in items:
            concept = f"<b>{esc(item.concept)}</b>" if item.concept else ""
            value = esc(item.value)
            yield f"<li>{concept}{': ' if concept and value else ''}{value}"
            if item.children:
                yield from walk(item.children)
            yield "</li>"
        yield "</ul>"

    parts += walk(root.children)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _xml(ds: Dataset, root: ContentItem) -> bytes:
    report = ET.Element("report", title=root.concept)
    for name, value in _header(ds):
        ET.SubElement(report, "field", name=name).text = value

    def walk(parent: ET.Element, item: ContentItem) -> None:
        node = ET.SubElement(parent, "item", relationship=item.relationship, type=item.value_type)
        ET.SubElement(node, "concept").text = item.concept
        if item.value:
            ET.SubElement(node, "value").text = item.value
        for child in item.children:
            walk(node, child)

    for child in root.children:
        walk(report, child)
    data: bytes = ET.tostring(report, encoding="utf-8", xml_declaration=True)
    return data
