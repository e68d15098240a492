"""Responses of DICOM media types, all streamed or built from already-encoded bytes."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.responses import Response

from ..codecs import dicom_json, dicom_xml
from ..codecs.multipart import join_multipart, multipart_content_type, new_boundary, write_multipart
from ..media_types import Choice

__all__ = ["dataset_response", "datasets_response", "gzip_if_accepted", "xml_parts"]

XML_TYPE = "application/dicom+xml"


def dataset_response(
    dataset: dict[str, Any], choice: Choice, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """One DICOM JSON object as JSON (``application/dicom+json`` or ``application/json``) or XML."""
    if _is_xml(choice):
        return Response(dicom_xml.json_dict_to_xml(dataset), status, headers, media_type=XML_TYPE)
    return Response(dicom_json.encode(dataset), status, headers, media_type=choice.offer.media_type)


def datasets_response(
    datasets: Sequence[dict[str, Any]], choice: Choice, *, headers: dict[str, str] | None = None
) -> Response:
    """A list of DICOM JSON objects: a JSON array, or multipart/related XML documents (PS3.18 §8.7.4)."""
    if not _is_xml(choice):
        return Response(dicom_json.encode(datasets), 200, headers, media_type=choice.offer.media_type)
    boundary = new_boundary()
    part_headers = {"Content-Type": f"{XML_TYPE}; charset=utf-8"}
    # The datasets are in memory already: one body, one write (not two sends per dataset).
    body = join_multipart(((part_headers, dicom_xml.json_dict_to_xml(dataset)) for dataset in datasets), boundary)
    return Response(body, 200, headers, media_type=multipart_content_type(XML_TYPE, boundary))


def gzip_if_accepted(
    accept_encoding: str | None, body: AsyncIterator[bytes | memoryview], headers: dict[str, str]
) -> AsyncIterator[bytes | memoryview]:
    """Compress ``body`` on the fly when the client accepts gzip (RFC 9110 §12.5.3); sets the headers."""
    headers["Vary"] = "Accept-Encoding"
    if not _accepts_gzip(accept_encoding):
        return body
    headers["Content-Encoding"] = "gzip"
    return _gzipped(body)


def _accepts_gzip(accept_encoding: str | None) -> bool:
    for coding in (accept_encoding or "").lower().split(","):
        name, _, params = coding.strip().partition(";")
        if name.strip() in ("gzip", "x-gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


async def _gzipped(body: AsyncIterator[bytes | memoryview]) -> AsyncIterator[bytes]:
    # Level 1: metadata compresses about 8x even so, at a fraction of level 6's CPU time.
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    async for chunk in body:
        if out := compressor.compress(chunk):
            yield out
    yield compressor.flush()


def xml_parts(documents: AsyncIterator[bytes], boundary: str) -> AsyncIterator[bytes | memoryview]:
    """Already-rendered XML documents as a multipart/related body (PS3.18 §8.7.4)."""

    async def parts() -> AsyncIterator[tuple[dict[str, str], AsyncIterator[bytes]]]:
        async for document in documents:
            yield {"Content-Type": f"{XML_TYPE}; charset=utf-8"}, _one(document)

    return write_multipart(parts(), boundary)


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _is_xml(choice: Choice) -> bool:
    return choice.offer.media_type == XML_TYPE or choice.offer.part_type == XML_TYPE
