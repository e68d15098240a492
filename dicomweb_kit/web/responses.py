"""Responses of DICOM media types, all streamed or built from already-encoded bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.responses import Response, StreamingResponse

from ..codecs import dicom_json, dicom_xml
from ..codecs.multipart import multipart_content_type, new_boundary, write_multipart
from ..media_types import Choice

__all__ = ["dataset_response", "datasets_response"]

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

    async def parts() -> AsyncIterator[tuple[dict[str, str], AsyncIterator[bytes]]]:
        for dataset in datasets:
            yield {"Content-Type": f"{XML_TYPE}; charset=utf-8"}, _one(dicom_xml.json_dict_to_xml(dataset))

    return StreamingResponse(
        write_multipart(parts(), boundary),
        headers=headers,
        media_type=multipart_content_type(XML_TYPE, boundary),
    )


def xml_parts_response(documents: AsyncIterator[bytes], *, headers: dict[str, str] | None = None) -> Response:
    """Already-rendered XML documents as a streamed multipart/related body."""
    boundary = new_boundary()

    async def parts() -> AsyncIterator[tuple[dict[str, str], AsyncIterator[bytes]]]:
        async for document in documents:
            yield {"Content-Type": f"{XML_TYPE}; charset=utf-8"}, _one(document)

    return StreamingResponse(
        write_multipart(parts(), boundary), headers=headers, media_type=multipart_content_type(XML_TYPE, boundary)
    )


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _is_xml(choice: Choice) -> bool:
    return choice.offer.media_type == XML_TYPE or choice.offer.part_type == XML_TYPE
