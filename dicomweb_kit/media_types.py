"""Content negotiation for every endpoint, and the one transfer syntax table (PS3.18 §8.7).

:func:`negotiate` picks a representation from what the client accepts (the ``Accept`` header, or
the ``accept`` query parameter of PS3.18 §8.3.3.1 which overrides it) and what the endpoint can
produce (its :class:`Offer` list, in server preference order).

Parsing is lenient on purpose, because real viewers send all of these: quoted and unquoted
parameters, several alternatives, q-values, ``*/*`` and ``type/*``, odd whitespace, upper case.
A range that cannot be parsed is skipped rather than failing the request; a header with no
usable range at all means nothing is acceptable (406).

Leniencies beyond PS3.18 (each documented where it is implemented):

* a bare single-part range (``application/dicom``, ``application/dicom; transfer-syntax=X``,
  ``application/dicom+xml``, ``application/octet-stream`` ...) matches a ``multipart/related``
  offer whose part type is that media type. PS3.18 §10.4 requires multipart for instance
  retrieval and for XML query results (§10.6.3.2), but clients such as the DICOMweb tutorial
  send ``Accept: application/dicom+xml`` to QIDO and ``application/dicom`` to instance retrieve;
  answering them beats a 406.
* the legacy names ``image/x-dicom-rle``, ``image/x-jls`` and the IANA name ``video/mpeg`` are
  aliases of the PS3.18 names ``image/dicom-rle``, ``image/jls`` and ``video/mpeg2``.
* in the ``accept`` query parameter a ``+`` may have been decoded to a space by form decoding
  (``application/dicom json``); it is read back as ``+``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

import msgspec
from pydicom import uid as _uid

from .errors import NotAcceptable

__all__ = [
    "DEFAULT_TRANSFER_SYNTAX",
    "DEFLATED_EXPLICIT_VR_LE",
    "EXPLICIT_VR_BE",
    "EXPLICIT_VR_LE",
    "IMPLICIT_VR_LE",
    "NOT_FOR_WEB",
    "TRANSFER_SYNTAX_MEDIA_TYPES",
    "Choice",
    "MediaRange",
    "Offer",
    "canonical_media_type",
    "media_type_for_transfer_syntax",
    "negotiate",
    "parse_accept",
    "transfer_syntaxes_for_media_type",
]

# --------------------------------------------------------------------------------------------
# Transfer syntaxes (PS3.18 §8.7.3)
# --------------------------------------------------------------------------------------------

IMPLICIT_VR_LE: Final[str] = str(_uid.ImplicitVRLittleEndian)
EXPLICIT_VR_LE: Final[str] = str(_uid.ExplicitVRLittleEndian)
DEFLATED_EXPLICIT_VR_LE: Final[str] = str(_uid.DeflatedExplicitVRLittleEndian)
EXPLICIT_VR_BE: Final[str] = str(_uid.ExplicitVRBigEndian)
ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LE: Final[str] = "1.2.840.10008.1.2.1.98"

# PS3.18 §8.7.3.5: "The Implicit VR Little Endian (1.2.840.10008.1.2) and Explicit VR Big Endian
# (1.2.840.10008.1.2.2) transfer syntaxes shall not be used with Web Services." A retrieve that
# would produce one of them (e.g. `transfer-syntax=*` on an Implicit VR instance) converts to
# Explicit VR Little Endian instead.
NOT_FOR_WEB: Final[frozenset[str]] = frozenset({IMPLICIT_VR_LE, EXPLICIT_VR_BE})

# Not in pydicom 3.0's uid module yet.
_JPEG_XL_LOSSLESS = "1.2.840.10008.1.2.4.110"
_JPEG_XL_JPEG_RECOMPRESSION = "1.2.840.10008.1.2.4.111"
_JPEG_XL = "1.2.840.10008.1.2.4.112"

# Media type of a single frame / bulk data value in each transfer syntax: PS3.18 §8.7.3,
# Table 8.7.3-4 (uncompressed bulk data) and Table 8.7.3-5 (compressed bulk data). The first
# transfer syntax listed for a media type is its default (Table 8.7.3-5 "default" rows).
_BULK_TABLE: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("application/octet-stream", (EXPLICIT_VR_LE, ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LE)),
    (
        # Table 8.7.3-5 marks JPEG Lossless SV1 as image/jpeg's default (D), the others optional.
        "image/jpeg",
        (str(_uid.JPEGLosslessSV1), str(_uid.JPEGBaseline8Bit), str(_uid.JPEGExtended12Bit), str(_uid.JPEGLossless)),
    ),
    ("image/dicom-rle", (str(_uid.RLELossless),)),
    ("image/jls", (str(_uid.JPEGLSLossless), str(_uid.JPEGLSNearLossless))),
    ("image/jp2", (str(_uid.JPEG2000Lossless), str(_uid.JPEG2000))),
    ("image/jpx", (str(_uid.JPEG2000MCLossless), str(_uid.JPEG2000MC))),
    ("image/jphc", (str(_uid.HTJ2KLossless), str(_uid.HTJ2KLosslessRPCL), str(_uid.HTJ2K))),
    ("image/jxl", (_JPEG_XL_LOSSLESS, _JPEG_XL_JPEG_RECOMPRESSION, _JPEG_XL)),
    ("video/mpeg2", (str(_uid.MPEG2MPML), str(_uid.MPEG2MPMLF), str(_uid.MPEG2MPHL), str(_uid.MPEG2MPHLF))),
    (
        "video/mp4",
        (
            str(_uid.MPEG4HP41),
            str(_uid.MPEG4HP41F),
            str(_uid.MPEG4HP41BD),
            str(_uid.MPEG4HP41BDF),
            str(_uid.MPEG4HP422D),
            str(_uid.MPEG4HP422DF),
            str(_uid.MPEG4HP423D),
            str(_uid.MPEG4HP423DF),
            str(_uid.MPEG4HP42STEREO),
            str(_uid.MPEG4HP42STEREOF),
        ),
    ),
    ("video/H265", (str(_uid.HEVCMP51), str(_uid.HEVCM10P51))),
)

TRANSFER_SYNTAX_MEDIA_TYPES: Final[Mapping[str, str]] = MappingProxyType(
    {ts: media_type for media_type, syntaxes in _BULK_TABLE for ts in syntaxes}
)
"""Transfer syntax UID → media type of its frames / bulk data (PS3.18 Tables 8.7.3-4, -5)."""

DEFAULT_TRANSFER_SYNTAX: Final[Mapping[str, str]] = MappingProxyType(
    {"application/dicom": EXPLICIT_VR_LE} | {media_type: syntaxes[0] for media_type, syntaxes in _BULK_TABLE}
)
"""Media type → the transfer syntax used when the client names none (PS3.18 §8.7.3, Tables 8.7.3-2..5)."""

_BULK_BY_MEDIA_TYPE: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {media_type.lower(): syntaxes for media_type, syntaxes in _BULK_TABLE}
)

# Legacy and IANA names clients still send, mapped to the PS3.18 name.
_ALIASES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "image/x-dicom-rle": "image/dicom-rle",
        "image/x-jls": "image/jls",
        "video/mpeg": "video/mpeg2",
    }
)


def canonical_media_type(media_type: str, /) -> str:
    """``media_type`` in lower case, legacy aliases replaced by the PS3.18 name."""
    lowered = media_type.strip().lower()
    return _ALIASES.get(lowered, lowered)


def media_type_for_transfer_syntax(transfer_syntax_uid: str, /) -> str | None:
    """The frame / bulk data media type of ``transfer_syntax_uid``, or ``None`` if PS3.18 lists none."""
    return TRANSFER_SYNTAX_MEDIA_TYPES.get(transfer_syntax_uid)


def transfer_syntaxes_for_media_type(media_type: str, /) -> tuple[str, ...]:
    """The transfer syntaxes whose frames have ``media_type`` (default first); ``()`` if none."""
    return _BULK_BY_MEDIA_TYPE.get(canonical_media_type(media_type), ())


# --------------------------------------------------------------------------------------------
# Accept parsing (RFC 9110 §12.5.1)
# --------------------------------------------------------------------------------------------

_MAX_HEADER = 8192
_MAX_RANGES = 64
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class MediaRange(msgspec.Struct, frozen=True):
    """One alternative of an Accept header: ``type/subtype`` (lower case, possibly ``*``),
    parameters (names lower case, values unquoted; ``type`` values lower case) and the q-value."""

    type: str
    subtype: str
    params: dict[str, str]
    q: float = 1.0

    @property
    def media_type(self) -> str:
        return f"{self.type}/{self.subtype}"

    @property
    def specificity(self) -> int:
        """``*/*`` < ``type/*`` < ``type/subtype`` < with ``type`` < with ``transfer-syntax``."""
        if self.type == "*":
            return 0
        if self.subtype == "*":
            return 1
        return 2 + ("type" in self.params) + ("transfer-syntax" in self.params)


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split on ``separator`` except inside double quotes (a backslash escapes the next char)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1]).strip()
    return value.strip('"').strip()


def _parse_range(text: str, *, plus_as_space: bool) -> MediaRange | None:
    pieces = _split_outside_quotes(text, ";")
    full = pieces[0].strip()
    if plus_as_space:
        full = re.sub(r"\s+", "+", full)
    type_, slash, subtype = full.partition("/")
    type_, subtype = type_.strip().lower(), subtype.strip().lower()
    if not slash or not _TOKEN.fullmatch(type_) or not _TOKEN.fullmatch(subtype):
        return None
    if type_ == "*" and subtype != "*":
        return None
    params: dict[str, str] = {}
    q = 1.0
    for piece in pieces[1:]:
        name, equals, raw = piece.partition("=")
        name = name.strip().lower()
        if not equals or not name:
            continue  # `; foo` or `;;`: ignored
        value = _unquote(raw)
        if name == "q":
            try:
                q = float(value)
            except ValueError:
                return None
            if not math.isfinite(q) or not 0.0 <= q <= 1.0:
                return None
            continue
        if not value:
            continue  # `type=""`: as if absent
        if name == "type":
            value = canonical_media_type(value)
        params.setdefault(name, value)
    type_, _, subtype = canonical_media_type(f"{type_}/{subtype}").partition("/")
    return MediaRange(type_, subtype, params, q)


def parse_accept(header: str | None, /, *, plus_as_space: bool = False) -> list[MediaRange]:
    """The media ranges of an Accept header, in header order; unparsable ranges are left out.

    ``plus_as_space=True`` is for the ``accept`` query parameter, where form decoding may have
    turned the ``+`` of ``application/dicom+json`` into a space.
    """
    if not header:
        return []
    ranges: list[MediaRange] = []
    for part in _split_outside_quotes(header[:_MAX_HEADER], ","):
        if not part.strip():
            continue
        parsed = _parse_range(part, plus_as_space=plus_as_space)
        if parsed is not None:
            ranges.append(parsed)
            if len(ranges) >= _MAX_RANGES:
                break
    return ranges


# --------------------------------------------------------------------------------------------
# Negotiation
# --------------------------------------------------------------------------------------------


class Offer(msgspec.Struct, frozen=True):
    """A representation an endpoint can produce.

    Attributes:
        media_type: e.g. ``"application/dicom+json"`` or ``"multipart/related"``.
        part_type: for ``multipart/related``, the media type of the parts (its ``type`` parameter).
        transfer_syntaxes: the transfer syntaxes this offer can be produced in; a range naming
            another one does not match. Empty when transfer syntax does not apply (JSON, XML,
            rendered images).
    """

    media_type: str
    part_type: str | None = None
    transfer_syntaxes: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = self.media_type if self.part_type is None else f'{self.media_type}; type="{self.part_type}"'
        if self.transfer_syntaxes:
            text += f" (transfer-syntax: {', '.join(self.transfer_syntaxes)})"
        return text


class Choice(msgspec.Struct, frozen=True):
    """The negotiated representation.

    Attributes:
        offer: the offer chosen.
        transfer_syntax: the transfer syntax the client asked for (one of the offer's);
            ``"*"`` when it accepts any (the server picks, never one of :data:`NOT_FOR_WEB`);
            ``None`` when it named none: the media type's default applies
            (:data:`DEFAULT_TRANSFER_SYNTAX`, PS3.18 §8.7.3, Tables 8.7.3-2..5).
    """

    offer: Offer
    transfer_syntax: str | None


def _type_matches(pattern: str, media_type: str) -> bool:
    """Does the (possibly wildcard) media range ``pattern`` cover ``media_type``? Both lower case."""
    if pattern == "*/*":
        return True
    ptype, _, psub = pattern.partition("/")
    mtype, _, msub = media_type.partition("/")
    return ptype == mtype and psub in ("*", msub)


def _match(media_range: MediaRange, offer: Offer) -> str | None | bool:
    """``False`` if the range does not cover the offer, else the transfer syntax of the Choice."""
    offer_type = canonical_media_type(offer.media_type)
    part_type = None if offer.part_type is None else canonical_media_type(offer.part_type)
    range_type = media_range.media_type
    if range_type == "multipart/related" and offer_type == "multipart/related":
        wanted_part = media_range.params.get("type")
        # No `type` parameter: the offer's default part type (PS3.18 §8.7.4: the server chooses).
        if wanted_part is not None and (part_type is None or not _type_matches(wanted_part, part_type)):
            return False
    elif _type_matches(range_type, offer_type):
        pass
    elif offer_type == "multipart/related" and part_type is not None and range_type == part_type:
        pass  # lenient: a bare single-part range matches a multipart offer of such parts (module doc)
    else:
        return False
    wanted_ts = media_range.params.get("transfer-syntax")
    if wanted_ts is None:
        return None
    if wanted_ts == "*":
        return "*"
    return wanted_ts if wanted_ts in offer.transfer_syntaxes else False


def _describe(offers: Sequence[Offer]) -> str:
    return "; ".join(str(offer) for offer in offers) or "nothing"


def negotiate(accept_header: str | None, offers: Sequence[Offer], /, *, accept_param: str | None = None) -> Choice:
    """Choose the offer the client prefers most, or raise :class:`NotAcceptable` (406).

    The client's order is q-value, then specificity, then header order; among the offers one
    range covers (e.g. ``*/*``), ``offers`` order (the server's preference) decides. A range
    with ``q=0`` excludes what it covers unless a more specific range accepts it. A missing or
    blank header (and blank ``accept`` parameter) accepts anything: the first offer.
    ``accept_param`` (PS3.18 §8.3.3.1) replaces the header when given.
    """
    if not offers:
        raise NotAcceptable("This resource has no representation to offer")
    # Clients send the same few headers again and again: parsing them was ~1/8 of a QIDO request.
    key = (accept_header, accept_param, tuple(offers))
    found = _CHOICES.get(key)
    if found is None:
        found = _negotiate(accept_header, offers, accept_param)
        if len(_CHOICES) >= _MAX_CACHED_CHOICES:
            _CHOICES.clear()
        _CHOICES[key] = found
    return found


_CHOICES: dict[tuple[str | None, str | None, tuple[Offer, ...]], Choice] = {}
_MAX_CACHED_CHOICES: Final = 1024


def _negotiate(accept_header: str | None, offers: Sequence[Offer], accept_param: str | None) -> Choice:
    if accept_param is not None and accept_param.strip():
        source, ranges = accept_param, parse_accept(accept_param, plus_as_space=True)
    elif accept_header is not None and accept_header.strip():
        source, ranges = accept_header, parse_accept(accept_header)
    else:
        return Choice(offers[0], None)

    indexed = sorted(enumerate(ranges), key=lambda pair: (-pair[1].q, -pair[1].specificity, pair[0]))
    refusals = [r for r in ranges if r.q == 0]
    for _, media_range in indexed:
        if media_range.q == 0:
            break
        for offer in offers:
            chosen = _match(media_range, offer)
            if chosen is False:
                continue
            if any(_refuses(refusal, media_range, offer, chosen) for refusal in refusals):
                continue
            return Choice(offer, chosen if isinstance(chosen, str) else None)
    shown = source if len(source) <= 200 else source[:197] + "..."
    raise NotAcceptable(
        f"None of the acceptable media types ({shown!r}) can be produced; available: {_describe(offers)}"
    )


def _refuses(refusal: MediaRange, accepted: MediaRange, offer: Offer, chosen: str | None | bool) -> bool:
    """Does the ``q=0`` range ``refusal`` veto the (``accepted`` range, offer, transfer syntax) pair?"""
    if refusal.specificity < accepted.specificity:
        return False
    refused_ts = _match(refusal, offer)
    if refused_ts is False:
        return False
    refusal_names_ts = refusal.params.get("transfer-syntax") not in (None, "*")
    return not refusal_names_ts or refused_ts == chosen
