"""QIDO-RS: search for studies, series and instances (PS3.18 §10.6)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from ..query.qido_params import parse_qido
from ..query.return_keys import result_attributes
from ..query.terms import Term
from ..resources import Level, ResourceKey

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = ["SearchResult", "search"]


class SearchResult(msgspec.Struct, frozen=True):
    """The result entities of a search as DICOM JSON objects, and whether more rows exist."""

    results: list[dict[str, Any]]
    has_more: bool
    not_performed: tuple[str, ...] = ()


async def search(
    kit: DicomWeb,
    level: Level,
    scope: ResourceKey,
    params: Sequence[tuple[str, str]],
    /,
    *,
    service_url: str,
    narrow: Sequence[Term] = (),
) -> SearchResult:
    """Run a QIDO-RS search; ``params`` are the request's decoded query parameters.

    ``narrow``: terms the authorization hook restricts the identity to, matched with the
    client's own (logical AND) inside the index's query, so counts, ``limit``/``offset`` paging
    and ``has_more`` are those of the narrowed result (:mod:`dicomweb_kit.authorization`).
    """
    settings = kit.settings
    query = parse_qido(
        params,
        level,
        scope,
        max_terms=settings.max_query_terms,
        default_limit=settings.qido_default_limit,
        max_limit=settings.qido_max_limit,
    )
    if narrow:
        query = msgspec.structs.replace(query, terms=(*query.terms, *narrow))
    page = await kit.index.search(query)
    results = [result_attributes(row, query, retrieve_url=f"{service_url}/{row.key.path()}") for row in page.rows]
    return SearchResult(results, page.has_more, query.not_performed)
