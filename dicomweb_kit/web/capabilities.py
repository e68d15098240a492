"""The Capabilities service (PS3.18 §8.9): a WADL document generated from the route table.

PS3.18 Annex H: one ``application`` element holding one ``resources`` element whose ``base`` is
the service's base URL, and a ``resource`` element for the Target Resource with all its methods
and child resources, recursively. §8.9.1.1 names the service root ("/") as the Target Resource;
earlier editions (2014-2017, §6.8.1.1 ``{SERVICE}[/{InformationEntity}]``) let OPTIONS target
any resource, and we answer both: OPTIONS on a resource describes that resource and its subtree.

Choices:

* The Retrieve Capabilities transaction itself is not in the document (Annex H, note to Table
  H-1: WADL is not self-describing); nor are our non-PS3.18 pages (OpenAPI, docs).
* Each method carries its PS3.18 transaction name as ``id`` and section in ``doc``; its request
  lists the query parameters this server reads (match keys: the ones PS3.18 Table 10.6.1-5
  requires, though any dictionary attribute works), an ``Accept`` header parameter whose options
  are the response media types this installation can produce, and the request body media types
  as ``representation`` elements; each documented status is a ``response`` element.
* Path segments without methods of their own (``frames``) are folded into their only child's
  path (``frames/{frames}``), as Table H-1 writes them.
* Media types: WADL (``application/vnd.sun.wadl+xml``) only; ``application/xml`` and ``*/*``
  also get it. Anything else is 406 (the 2014-2017 editions also listed ``application/json``,
  with no defined shape: the 406 message points at ``{root}/openapi.json`` instead).
* PS3.18 defines no GET form of this transaction (§8.9.1: ``OPTIONS SP / SP version``), so GET
  on the service root is 405 with ``Allow: OPTIONS``, and its message says where the
  descriptions are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from xml.etree import ElementTree as ET

from starlette.requests import Request
from starlette.responses import Response

from ..errors import NotAcceptable
from ..media_types import Offer, negotiate
from .endpoints import service_url
from .route_table import PATH_PARAMS, WADL_TYPE, Operation, Resource, path_params, served, uri_template

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = ["WADL_NS", "capabilities_response", "wadl_document"]

WADL_NS = "http://wadl.dev.java.net/2009/02"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
_OFFERS = [Offer(WADL_TYPE), Offer("application/xml")]
_XSD_TYPES = {"string": "xsd:string", "integer": "xsd:int", "boolean": "xsd:boolean"}


@dataclass
class _Node:
    resource: Resource | None = None
    children: dict[str, _Node] = field(default_factory=dict)


def _segments(path: str) -> list[str]:
    return [segment for segment in uri_template(path).split("/") if segment]


def _tree(resources: list[Resource]) -> _Node:
    root = _Node()
    for resource in resources:
        node = root
        for segment in _segments(resource.path):
            node = node.children.setdefault(segment, _Node())
        node.resource = resource
    return root


def wadl_document(kit: DicomWeb, base_url: str, /, *, target: str = "/") -> bytes:
    """The WADL of what ``kit`` serves under ``target`` (a path template of the route table, or
    ``"/"`` for the whole service), with ``base_url`` as the ``resources`` base (Annex H)."""
    # Plain names and literal xmlns attributes: ElementTree cannot write a default namespace
    # with unqualified attributes, and WADL's attributes are unqualified.
    app = ET.Element("application", {"xmlns": WADL_NS, "xmlns:xsd": XSD_NS})
    doc = ET.SubElement(app, _q("doc"), {"title": "dicomweb-kit DICOMweb service"})
    doc.text = "Capabilities Description (DICOM PS3.18 §8.9, Annex H) of this server with its current settings."
    resources = ET.SubElement(app, _q("resources"), {"base": base_url})
    node = _tree(served(kit))
    segments = _segments(target)
    for segment in segments:
        node = node.children[segment]
    if segments:
        _resource(resources, "/".join(segments), node)
    else:
        for segment, child in node.children.items():
            _resource(resources, segment, child)
    ET.indent(app)
    document: bytes = ET.tostring(app, encoding="utf-8", xml_declaration=True)
    return document


def _q(name: str) -> str:
    return name  # in the default namespace, WADL_NS, declared on the root


def _resource(parent: ET.Element, path: str, node: _Node) -> None:
    while node.resource is None and len(node.children) == 1:
        [(segment, node)] = node.children.items()
        path = f"{path}/{segment}"
    element = ET.SubElement(parent, _q("resource"), {"path": path})
    for name in path_params(path):
        description, _ = PATH_PARAMS[name]
        param = ET.SubElement(
            element, _q("param"), {"name": name, "style": "template", "type": "xsd:string", "required": "true"}
        )
        ET.SubElement(param, _q("doc")).text = description
    if node.resource is not None:
        for operation in node.resource.operations:
            _method(element, operation)
    for segment, child in node.children.items():
        _resource(element, segment, child)


def _method(parent: ET.Element, operation: Operation) -> None:
    method = ET.SubElement(parent, _q("method"), {"name": operation.method, "id": operation.name})
    doc = ET.SubElement(method, _q("doc"), {"title": operation.summary})
    served = f"; served with {operation.condition.description}." if operation.condition else "."
    doc.text = " ".join([operation.section + served, *([operation.notes] if operation.notes else [])])
    request = ET.SubElement(method, _q("request"))
    for param in operation.params:
        attrs = {"name": param.name, "style": param.style, "type": _XSD_TYPES[param.type]}
        if param.repeating:
            attrs["repeating"] = "true"
        element = ET.SubElement(request, _q("param"), attrs)
        ET.SubElement(element, _q("doc")).text = param.description
        for value in param.enum:
            ET.SubElement(element, _q("option"), {"value": value})
    responses = operation.responses()
    if responses:
        accept = ET.SubElement(request, _q("param"), {"name": "Accept", "style": "header", "default": responses[0]})
        for media_type in responses:
            ET.SubElement(accept, _q("option"), {"value": media_type, "mediaType": media_type.split(";")[0]})
    for media_type in operation.requests():
        ET.SubElement(request, _q("representation"), {"mediaType": media_type})
    for status, text in operation.statuses.items():
        response = ET.SubElement(method, _q("response"), {"status": str(status)})
        ET.SubElement(response, _q("doc")).text = text
        kinds = list(responses) if operation.has_payload(status) else []
        if status >= 400:
            kinds.append("text/plain")
        for media_type in kinds:
            ET.SubElement(response, _q("representation"), {"mediaType": media_type})


def capabilities_response(request: Request, kit: DicomWeb, target: str, allow: str) -> Response:
    """The answer to ``OPTIONS`` on ``target``: its WADL, with ``Allow``."""
    try:
        choice = negotiate(request.headers.get("accept"), _OFFERS)
    except NotAcceptable as exc:
        # 2014-2017 editions also named application/json; its shape was never defined. Point at
        # the JSON description we do have.
        raise NotAcceptable(f"{exc.message} (a JSON description is at {service_url(request)}/openapi.json)") from None
    body = wadl_document(kit, service_url(request), target=target)
    return Response(body, media_type=choice.offer.media_type, headers={"Allow": allow})
