"""The OpenAPI 3.1 document of a kit, generated from the route table (``web/route_table.py``).

Served at ``{root}/openapi.json``; :func:`openapi_document` is also what the ReDoc page and the
cheatsheet are made from. It lists what this kit serves with its settings and installed extras,
as the Capabilities WADL does (PS3.18 §8.9), in a form API tools read.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .endpoints import service_url
from .route_table import PATH_PARAMS, TEXT, Operation, Param, Resource, path_params, served, uri_template

if TYPE_CHECKING:
    from ..kit import DicomWeb

__all__ = ["TITLE", "openapi_document", "openapi_path", "openapi_response", "service_name"]

TITLE = "dicomweb-kit DICOMweb API"

# PS3.18 §F.2: a DICOM JSON dataset is an object of 8-hex-digit tags, each with a VR.
_DATASET: dict[str, Any] = {
    "type": "object",
    "propertyNames": {"pattern": "^[0-9A-Fa-f]{8}$"},
    "additionalProperties": {
        "type": "object",
        "required": ["vr"],
        "properties": {"vr": {"type": "string", "pattern": "^[A-Z]{2}$"}},
    },
}
_DATASETS: dict[str, Any] = {"type": "array", "items": {"$ref": "#/components/schemas/Dataset"}}


def openapi_path(path: str, /) -> str:
    """A Starlette path template as an OpenAPI one (``{path:path}`` → ``{path}``)."""
    return uri_template(path)


def service_name(operation: Operation, /) -> str:
    """The PS3.18 service an operation belongs to (the OpenAPI tag, a cheatsheet heading)."""
    section = operation.section
    if "§10.6" in section:
        return "QIDO-RS"
    if "§10.5" in section:
        return "STOW-RS"
    if "§10.4" in section:
        return "WADO-RS"
    if "§11." in section:
        return "UPS-RS"
    if "§8.9" in section:
        return "Capabilities"
    return "Other"


_FORBIDDEN = "The authorization hook refused the request (with hide_denied, a hidden resource is 404)"


def openapi_document(kit: DicomWeb, base_url: str, /) -> dict[str, Any]:
    """The OpenAPI 3.1 document of what ``kit`` serves, with ``base_url`` (the service root as the
    client reached it, or ``Settings.public_url``) as its server."""
    paths: dict[str, Any] = {
        "/": {
            "options": {
                "operationId": "RetrieveCapabilities",
                **_external_docs("PS3.18 §8.9"),
                "summary": "The Capabilities Description of the service, a WADL document",
                "description": (
                    "PS3.18 §8.9, Annex H. OPTIONS on any resource describes that resource and its children."
                ),
                "tags": ["Capabilities"],
                "responses": {
                    "200": {
                        "description": "The WADL document",
                        "content": {"application/vnd.sun.wadl+xml": {"schema": {"type": "string"}}},
                    },
                    "406": {
                        "description": "The WADL media type is not acceptable",
                        "content": {TEXT: {"schema": {"type": "string"}}},
                    },
                },
            }
        }
    }
    for resource in served(kit):
        item = paths.setdefault(openapi_path(resource.path), {})
        for operation in resource.operations:
            item[operation.method.lower()] = found = _operation(resource, operation)
            if kit.authorizer is not None:  # web/authorization.py asks the host's hook first
                found["responses"]["403"] = _response(operation, 403, _FORBIDDEN)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": _version(),
            "summary": "DICOMweb (DICOM PS3.18): QIDO-RS, STOW-RS, WADO-RS, UPS-RS",
            "description": (
                "Generated from the server's route table for its current settings and installed extras. "
                "Errors are a short text/plain message, repeated in a `Warning: 299` header (PS3.18 §8.6)."
            ),
        },
        "servers": [{"url": base_url.rstrip("/")}],
        "tags": [{"name": name} for name in ("QIDO-RS", "STOW-RS", "WADO-RS", "UPS-RS", "Capabilities", "Other")],
        "paths": paths,
        "components": {"schemas": {"Dataset": _DATASET}},
    }


async def openapi_response(request: Request) -> Response:
    """``GET {root}/openapi.json``."""
    kit: DicomWeb = request.app.state.kit
    return JSONResponse(openapi_document(kit, service_url(request)))


def _version() -> str:
    from .. import __version__

    return __version__


def _operation(resource: Resource, operation: Operation) -> dict[str, Any]:
    description = [f"{operation.section}."]
    if operation.notes:
        description.append(operation.notes)
    if operation.condition is not None:
        description.append(f"Served only with {operation.condition.description}.")
    found: dict[str, Any] = {
        "operationId": operation.name,
        **_external_docs(operation.section),
        "summary": operation.summary,
        "description": " ".join(description),
        "tags": [service_name(operation)],
        "parameters": [_path_param(name) for name in path_params(resource.path)]
        + [_param(param) for param in operation.params],
        "responses": {str(status): _response(operation, status, text) for status, text in operation.statuses.items()},
    }
    if operation.requests():
        found["requestBody"] = {
            "required": operation.name != "RequestWorkitemCancellation",  # PS3.18 §11.8.1.4: optional
            "content": {media_type: {"schema": _body_schema(media_type)} for media_type in operation.requests()},
        }
    return found


_SECTION = re.compile(r"PS3\.18 §(\d+\.\d+)")


def _external_docs(section: str) -> dict[str, Any]:
    """A link to the PS3.18 section (its chapter-and-section page: deeper ones are not all pages)."""
    found = _SECTION.match(section)
    if found is None:
        return {}
    url = f"https://dicom.nema.org/medical/dicom/current/output/chtml/part18/sect_{found.group(1)}.html"
    return {"externalDocs": {"description": section, "url": url}}


def _path_param(name: str) -> dict[str, Any]:
    description, pattern = PATH_PARAMS[name]
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if pattern is not None:
        schema["pattern"] = pattern
    if name in ("study", "series", "instance", "workitem"):
        schema["maxLength"] = 64  # PS3.5 §9.1
    if name == "ae_title":
        schema["maxLength"] = 16
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


def _param(param: Param) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": param.type}
    if param.enum:
        schema["enum"] = list(param.enum)
    if param.minimum is not None:
        schema["minimum"] = param.minimum
    if param.maximum is not None:
        schema["maximum"] = param.maximum
    if param.repeating:
        schema = {"type": "array", "items": schema}
    found: dict[str, Any] = {"name": param.name, "in": param.style, "description": param.description, "schema": schema}
    if param.repeating:
        found |= {"style": "form", "explode": True}
    return found


def _response(operation: Operation, status: int, text: str) -> dict[str, Any]:
    if status >= 400:
        content = {TEXT: {"schema": {"type": "string"}}}
        if operation.has_payload(status):
            content |= {media_type: {"schema": _schema(operation, media_type)} for media_type in operation.responses()}
        return {"description": text, "content": content}
    if operation.has_payload(status):
        return {
            "description": text,
            "content": {media_type: {"schema": _schema(operation, media_type)} for media_type in operation.responses()},
        }
    return {"description": text}


def _schema(operation: Operation, media_type: str) -> dict[str, Any]:
    base = media_type.split(";")[0]
    dicom = "application/dicom+json" in (m.split(";")[0] for m in operation.responses())
    if dicom and base in ("application/dicom+json", "application/json"):  # application/json as its alias
        if operation.name.startswith("Store"):  # PS3.18 §10.5.3: one response dataset
            return {"$ref": "#/components/schemas/Dataset"}
        return _DATASETS
    return {} if base.endswith("json") else {"type": "string"}


def _body_schema(media_type: str) -> dict[str, Any]:
    if media_type.split(";")[0] in ("application/dicom+json", "application/json"):
        return {"$ref": "#/components/schemas/Dataset"}
    return {"type": "string", "contentMediaType": media_type.split(";")[0]}
