"""Accept parsing and content negotiation, with the headers real clients send (real-clients.md)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dicomweb_kit.errors import DicomWebError, NotAcceptable
from dicomweb_kit.media_types import (
    DEFAULT_TRANSFER_SYNTAX,
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    NOT_FOR_WEB,
    TRANSFER_SYNTAX_MEDIA_TYPES,
    Choice,
    MediaRange,
    Offer,
    media_type_for_transfer_syntax,
    negotiate,
    parse_accept,
    transfer_syntaxes_for_media_type,
)

JPEG = "1.2.840.10008.1.2.4.50"
J2K = "1.2.840.10008.1.2.4.90"

QIDO = [
    Offer("application/dicom+json"),
    Offer("application/json"),
    Offer("multipart/related", part_type="application/dicom+xml"),
]
RETRIEVE = [Offer("multipart/related", part_type="application/dicom", transfer_syntaxes=(EXPLICIT_VR_LE, JPEG))]
FRAMES = [
    Offer("multipart/related", part_type="application/octet-stream", transfer_syntaxes=(EXPLICIT_VR_LE,)),
    Offer("multipart/related", part_type="image/jpeg", transfer_syntaxes=(JPEG,)),
]
THUMBNAIL = [Offer("image/jpeg"), Offer("image/png")]


# --- parse_accept ---------------------------------------------------------------------------


def test_parse_quoted_and_unquoted_parameters() -> None:
    quoted, unquoted = (
        parse_accept('multipart/related; type="application/dicom"; transfer-syntax=*')[0],
        parse_accept("multipart/related; type=application/dicom; transfer-syntax=*")[0],
    )
    assert (
        quoted == unquoted == MediaRange("multipart", "related", {"type": "application/dicom", "transfer-syntax": "*"})
    )


def test_parse_several_alternatives_and_q() -> None:
    ranges = parse_accept("application/dicom+json;q=0.5, Application/JSON ; q=0.9 ,*/*;q=0.1")
    assert [(r.media_type, r.q) for r in ranges] == [
        ("application/dicom+json", 0.5),
        ("application/json", 0.9),
        ("*/*", 0.1),
    ]


def test_parse_commas_inside_quotes_do_not_split() -> None:
    ranges = parse_accept('multipart/related; type="application/dicom"; x="a,b", */*')
    assert len(ranges) == 2 and ranges[0].params["x"] == "a,b"


@pytest.mark.parametrize(
    "header",
    ["", "   ", ",,,", "garbage", "/", "text/", "*/json", "a/b;q=2", "a/b;q=abc", "a b/c", '"', ";;;=="],
)
def test_parse_garbage_ranges_are_dropped(header: str) -> None:
    assert parse_accept(header) == []


def test_parse_keeps_good_ranges_next_to_garbage() -> None:
    ranges = parse_accept("garbage, application/dicom+json; q=oops, image/jpeg,  ; ,text/html;q=0")
    assert [(r.media_type, r.q) for r in ranges] == [("image/jpeg", 1.0), ("text/html", 0.0)]


def test_parse_whitespace_and_empty_params() -> None:
    (media_range,) = parse_accept(' multipart/related\t;  type = "application/dicom" ; ; foo ; type="" ')
    assert media_range.params == {"type": "application/dicom"}


def test_parse_legacy_alias_names() -> None:
    assert parse_accept("image/x-jls")[0].media_type == "image/jls"
    assert parse_accept('multipart/related; type="image/x-dicom-rle"')[0].params["type"] == "image/dicom-rle"


# --- negotiate: real clients -------------------------------------------------------------------


def test_ohif_frames_unquoted_type_and_any_transfer_syntax() -> None:
    choice = negotiate("multipart/related; type=application/octet-stream; transfer-syntax=*", FRAMES)
    assert choice == Choice(FRAMES[0], "*")


def test_orthanc_retrieve_quoted_type_any_transfer_syntax() -> None:
    choice = negotiate('multipart/related; type="application/dicom"; transfer-syntax=*', RETRIEVE)
    assert choice == Choice(RETRIEVE[0], "*")


def test_dicomweb_client_quoted_type_without_transfer_syntax() -> None:
    assert negotiate('multipart/related; type="application/dicom"', RETRIEVE) == Choice(RETRIEVE[0], None)


def test_dicomweb_client_frames_wildcard_part_type() -> None:
    assert negotiate('multipart/related; type="*/*"', FRAMES).offer == FRAMES[0]
    assert negotiate('multipart/related; type="image/*"', FRAMES).offer == FRAMES[1]


@pytest.mark.parametrize("header", ["*/*", None, "", "  "])
def test_any_or_missing_is_first_offer(header: str | None) -> None:
    assert negotiate(header, QIDO) == Choice(QIDO[0], None)


def test_orthanc_qido_star_star() -> None:
    assert negotiate("*/*", QIDO).offer.media_type == "application/dicom+json"


def test_text_html_on_qido_is_406_naming_what_we_produce() -> None:
    with pytest.raises(NotAcceptable) as info:
        negotiate("text/html", QIDO)
    assert "application/dicom+json" in info.value.message
    assert 'multipart/related; type="application/dicom+xml"' in info.value.message
    assert info.value.http_status == 406


def test_browser_accept_falls_back_to_wildcard() -> None:
    header = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    assert negotiate(header, QIDO).offer == QIDO[0]


def test_q_values_order_client_preference() -> None:
    header = "application/dicom+json;q=0.4, multipart/related; type=application/dicom+xml; q=0.8"
    assert negotiate(header, QIDO).offer == QIDO[2]


def test_equal_q_more_specific_first_then_header_order() -> None:
    assert negotiate("*/*, application/json", QIDO).offer == QIDO[1]
    assert negotiate("application/json, application/dicom+json", QIDO).offer == QIDO[1]
    assert negotiate("application/*", QIDO).offer == QIDO[0]


def test_q_zero_excludes() -> None:
    assert negotiate("*/*, application/dicom+json;q=0", QIDO).offer == QIDO[1]
    with pytest.raises(NotAcceptable):
        negotiate("application/dicom+json;q=0", QIDO)
    # A more specific range overrides a q=0 wildcard.
    assert negotiate("*/*;q=0, application/json", QIDO).offer == QIDO[1]


def test_q_zero_on_one_transfer_syntax_only_excludes_that_one() -> None:
    header = f'multipart/related; type="application/dicom"; transfer-syntax={JPEG}; q=0, multipart/related'
    assert negotiate(header, RETRIEVE) == Choice(RETRIEVE[0], None)


def test_tutorial_plain_dicom_xml_matches_multipart_xml() -> None:
    assert negotiate("application/dicom+xml", QIDO).offer == QIDO[2]


def test_application_json_is_an_offer() -> None:
    assert negotiate("application/json", QIDO).offer == QIDO[1]


def test_bare_application_dicom_matches_multipart_retrieve() -> None:
    assert negotiate("application/dicom", RETRIEVE) == Choice(RETRIEVE[0], None)
    assert negotiate(f"application/dicom; transfer-syntax={JPEG}", RETRIEVE) == Choice(RETRIEVE[0], JPEG)


def test_specific_transfer_syntax_must_be_offered() -> None:
    choice = negotiate(f"multipart/related; type=application/dicom; transfer-syntax={JPEG}", RETRIEVE)
    assert choice.transfer_syntax == JPEG
    with pytest.raises(NotAcceptable, match="transfer-syntax"):
        negotiate(f"multipart/related; type=application/dicom; transfer-syntax={J2K}", RETRIEVE)


def test_fallback_to_second_alternative_when_transfer_syntax_unavailable() -> None:
    header = (
        f"multipart/related; type=application/dicom; transfer-syntax={J2K}, "
        "multipart/related; type=application/dicom; q=0.5"
    )
    assert negotiate(header, RETRIEVE) == Choice(RETRIEVE[0], None)


def test_multipart_without_type_takes_default_part_type() -> None:
    assert negotiate("multipart/related", FRAMES).offer == FRAMES[0]
    assert negotiate("multipart/related; transfer-syntax=*", QIDO).offer == QIDO[2]


def test_multipart_does_not_match_single_part_offers() -> None:
    with pytest.raises(NotAcceptable):
        negotiate("multipart/related; type=application/dicom", THUMBNAIL)


def test_accept_query_parameter_overrides_header() -> None:
    # OHIF thumbnails: `?accept=image/jpeg` with `Accept: */*`.
    assert negotiate("*/*", THUMBNAIL, accept_param="image/png").offer == THUMBNAIL[1]
    assert negotiate("image/png", THUMBNAIL, accept_param="image/jpeg").offer == THUMBNAIL[0]
    assert negotiate("image/png", THUMBNAIL, accept_param="").offer == THUMBNAIL[1]
    with pytest.raises(NotAcceptable):
        negotiate("*/*", THUMBNAIL, accept_param="text/html")


def test_accept_query_parameter_list_and_plus_decoded_as_space() -> None:
    assert negotiate(None, QIDO, accept_param="text/html,application/json").offer == QIDO[1]
    assert negotiate(None, QIDO, accept_param="application/dicom json").offer == QIDO[0]


def test_unparsable_header_is_406() -> None:
    with pytest.raises(NotAcceptable):
        negotiate("this is not a media type", QIDO)


def test_no_offers_is_406() -> None:
    with pytest.raises(NotAcceptable):
        negotiate("*/*", [])


# --- fuzz ---------------------------------------------------------------------------------------

_ALPHABET = st.sampled_from(list('abcjson/+*;=,"q.0123456789 \t\\-') + ["type", "transfer-syntax", "multipart/related"])
_HEADERS = st.one_of(st.text(), st.lists(_ALPHABET, max_size=40).map("".join))


@given(header=_HEADERS, param=st.none() | _HEADERS)
def test_fuzz_parse_and_negotiate_raise_only_not_acceptable(header: str, param: str | None) -> None:
    for media_range in parse_accept(header):
        assert 0.0 <= media_range.q <= 1.0
    for offers in (QIDO, RETRIEVE, FRAMES, THUMBNAIL):
        try:
            choice = negotiate(header, offers, accept_param=param)
        except NotAcceptable:
            continue
        except DicomWebError as err:  # pragma: no cover - would be a bug
            raise AssertionError(f"unexpected {err!r}") from err
        assert choice.offer in offers


# --- transfer syntax table ---------------------------------------------------------------------


def test_transfer_syntax_table() -> None:
    assert media_type_for_transfer_syntax(JPEG) == "image/jpeg"
    assert media_type_for_transfer_syntax("1.2.840.10008.1.2.4.91") == "image/jp2"
    assert media_type_for_transfer_syntax("1.2.840.10008.1.2.4.80") == "image/jls"
    assert media_type_for_transfer_syntax("1.2.840.10008.1.2.4.81") == "image/jls"
    assert media_type_for_transfer_syntax("1.2.840.10008.1.2.5") == "image/dicom-rle"
    assert media_type_for_transfer_syntax("1.2.840.10008.1.2.4.100") == "video/mpeg2"
    assert media_type_for_transfer_syntax("1.2.840.10008.1.2.4.102") == "video/mp4"
    assert media_type_for_transfer_syntax("1.2.840.10008.1.2.4.107") == "video/H265"
    assert media_type_for_transfer_syntax(EXPLICIT_VR_LE) == "application/octet-stream"
    assert media_type_for_transfer_syntax(IMPLICIT_VR_LE) is None
    assert transfer_syntaxes_for_media_type("image/x-jls")[0] == "1.2.840.10008.1.2.4.80"
    assert DEFAULT_TRANSFER_SYNTAX["application/dicom"] == EXPLICIT_VR_LE
    assert DEFAULT_TRANSFER_SYNTAX["image/jpeg"] == "1.2.840.10008.1.2.4.70"  # Table 8.7.3-5: JPEG Lossless SV1


def test_not_for_web() -> None:
    assert NOT_FOR_WEB == {"1.2.840.10008.1.2", "1.2.840.10008.1.2.2"} == {IMPLICIT_VR_LE, EXPLICIT_VR_BE}
    assert not NOT_FOR_WEB & set(TRANSFER_SYNTAX_MEDIA_TYPES)
