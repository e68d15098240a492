"""The cheatsheet: one HTML page with every operation of an OpenAPI document, its media types and an
example request in curl and in Python (httpx). Generated from the document, never written by hand,
so it lists exactly what the route table serves."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator, Mapping
from html import escape
from typing import Any

__all__ = ["cheatsheet_html"]

METHODS = ("get", "head", "post", "put", "patch", "delete", "options")
_PARAM = re.compile(r"\{([^}]+)\}")


def cheatsheet_html(document: Mapping[str, Any], *, root: str, docs_url: str, openapi_url: str) -> str:
    """The page for ``document`` (OpenAPI 3.1), with examples against the service root ``root``."""
    title = str(document.get("info", {}).get("title", "API"))
    operations = list(_operations(document))
    path_params = _path_parameters(document, operations)
    parts = [
        _HEAD.format(title=escape(title + " cheatsheet")),
        f"<header><h1>{escape(title)}: cheatsheet</h1>",
        f"<p>Service root <code>{escape(root)}</code>. Every endpoint below, generated from the "
        f'<a href="{escape(openapi_url)}">OpenAPI document</a>; the full reference is on the '
        f'<a href="{escape(docs_url)}">API page</a>.</p>',
        _setup(root, path_params),
        "</header>",
        "<nav><h2>Endpoints</h2><ul>",
    ]
    for path, method, op in operations:
        parts.append(
            f'<li><a href="#{_anchor(method, path)}"><span class="method {method}">{method.upper()}</span> '
            f"<code>{escape(path)}</code></a> {escape(str(op.get('summary', '')))}</li>"
        )
    parts.append("</ul></nav><main>")
    parts += [_operation(document, root, path, method, op) for path, method, op in operations]
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def _operations(document: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def _resolve(document: Mapping[str, Any], node: Any) -> Any:
    """Follows a local ``$ref`` (``#/components/parameters/x``) to what it names."""
    while isinstance(node, Mapping) and "$ref" in node:
        target: Any = document
        for key in str(node["$ref"]).removeprefix("#/").split("/"):
            target = target[key.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def _parameters(document: Mapping[str, Any], path: str, op: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    # Path-item level parameters apply to every operation; an operation's own override them.
    item = document["paths"][path]
    merged: dict[tuple[str, str], Mapping[str, Any]] = {}
    for raw in (*item.get("parameters", ()), *op.get("parameters", ())):
        param = _resolve(document, raw)
        merged[(param["name"], param["in"])] = param
    return list(merged.values())


def _path_parameters(
    document: Mapping[str, Any], operations: list[tuple[str, str, Mapping[str, Any]]]
) -> dict[str, Mapping[str, Any]]:
    found: dict[str, Mapping[str, Any]] = {}
    for path, _, op in operations:
        params = {p["name"]: p for p in _parameters(document, path, op) if p["in"] == "path"}
        for name in _PARAM.findall(path):
            found.setdefault(name, params.get(name, {"name": name}))
    return found


def _python_name(name: str) -> str:
    ident = re.sub(r"\W", "_", name)
    return "_" + ident if ident[:1].isdigit() else ident


# Variables a shell relies on: a path parameter named ``path`` must not become ``PATH=...``.
_SHELL_RESERVED = frozenset({"PATH", "HOME", "USER", "SHELL", "PWD", "OLDPWD", "IFS", "LANG", "TERM", "HOSTNAME"})


def _shell_name(name: str) -> str:
    upper = _python_name(name).upper()
    return "DICOMWEB_" + upper if upper in _SHELL_RESERVED else upper


def _example_value(param: Mapping[str, Any]) -> str:
    for holder in (param, param.get("schema", {})):
        if "example" in holder:
            return str(holder["example"])
        if holder.get("examples"):
            examples = holder["examples"]
            first = next(iter(examples.values())) if isinstance(examples, Mapping) else examples[0]
            return str(first.get("value", "") if isinstance(first, Mapping) else first)
    return "..."


def _setup(root: str, path_params: Mapping[str, Mapping[str, Any]]) -> str:
    """The variables every example uses: the service root and one per path parameter."""
    shell = [f"ROOT={shlex.quote(root)}"]
    python = ["from pathlib import Path", "", "import httpx", "", f"root = {root!r}"]
    for name, param in path_params.items():
        value, note = _example_value(param), str(param.get("description", "")).split("\n")[0].split("; ")[0]
        shell.append(f"{_shell_name(name)}={shlex.quote(value)}" + (f"  # {note}" if note else ""))
        python.append(f"{_python_name(name)} = {value!r}" + (f"  # {note}" if note else ""))
    return (
        "<p>Set these first (the examples use them):</p>"
        + _code("shell", "\n".join(shell))
        + _code("python", "\n".join(python))
    )


def _operation(document: Mapping[str, Any], root: str, path: str, method: str, op: Mapping[str, Any]) -> str:
    params = _parameters(document, path, op)
    body = _resolve(document, op.get("requestBody")) or {}
    request_types = list(body.get("content", {}))
    responses = [(str(code), _resolve(document, r)) for code, r in op.get("responses", {}).items()]
    success = next((r for code, r in responses if code.startswith("2") and r.get("content")), None)
    accept = next(iter(success["content"]), None) if success else None
    rows = [
        f'<section id="{_anchor(method, path)}">',
        f'<h3><span class="method {method}">{method.upper()}</span> <code>{escape(path)}</code></h3>',
    ]
    if op.get("summary"):
        rows.append(f"<p class=summary>{escape(str(op['summary']))}</p>")
    if request_types:
        rows.append("<p>Request body: " + ", ".join(f"<code>{escape(t)}</code>" for t in request_types) + "</p>")
    rows.append("<table class=responses><tr><th>status</th><th>meaning</th><th>media types</th></tr>")
    for code, response in responses:
        types = ", ".join(f"<code>{escape(t)}</code>" for t in response.get("content", {}))
        rows.append(
            f"<tr><td>{escape(code)}</td><td>{escape(str(response.get('description', '')))}</td><td>{types}</td></tr>"
        )
    rows.append("</table>")
    query = [p for p in params if p["in"] in ("query", "header")]
    if query:
        rows.append(
            "<p>Parameters: "
            + ", ".join(
                f'<code title="{escape(str(p.get("description", "")))}">{escape(p["name"])}</code>'
                + (" (required)" if p.get("required") else "")
                + ("" if p["in"] == "query" else " (header)")
                for p in query
            )
            + "</p>"
        )
    required = [p for p in query if p.get("required")]
    rows.append(_code("shell", _curl(path, method, accept, request_types, body, required)))
    rows.append(_code("python", _python(path, method, accept, request_types, body, required)))
    rows.append("</section>")
    return "\n".join(rows)


def _anchor(method: str, path: str) -> str:
    return method + "-" + re.sub(r"[^A-Za-z0-9]+", "-", path).strip("-")


def _code(language: str, text: str) -> str:
    return f'<pre class="{language}"><code>{escape(text)}</code></pre>'


def _body_file(media_type: str) -> str:
    kind = media_type.split(";")[0].strip()
    if kind == "application/dicom" or 'type="application/dicom"' in media_type:
        return "image.dcm"
    if kind.endswith("json") or "json" in media_type:
        return "request.json"
    if kind.endswith("xml") or "xml" in media_type:
        return "request.xml"
    return "request.bin"


def _multipart_part_type(media_type: str) -> str | None:
    match = re.search(r'type="?([^";]+)"?', media_type)
    return match.group(1) if media_type.startswith("multipart/related") and match else None


def _curl(
    path: str,
    method: str,
    accept: str | None,
    request_types: list[str],
    body: Mapping[str, Any],
    required: list[Mapping[str, Any]],
) -> str:
    url = '"$ROOT' + _PARAM.sub(lambda m: "$" + _shell_name(m.group(1)), path)
    query = [p for p in required if p["in"] == "query"]
    url += "".join(f"{'&' if i else '?'}{p['name']}=..." for i, p in enumerate(query)) + '"'
    command = ["curl", "--head" if method == "head" else "" if method == "get" else f"-X {method.upper()}", url]
    options = [f"-H {shlex.quote(f'Accept: {accept}')}"] if accept else []
    options += ["-H " + shlex.quote(str(p["name"]) + ": ...") for p in required if p["in"] == "header"]
    if request_types:
        media_type = request_types[0]
        part_type = _multipart_part_type(media_type)
        options.append(f"-H {shlex.quote(f'Content-Type: {media_type}')}")
        example = body.get("content", {}).get(media_type, {}).get("example")
        if part_type:
            # curl -F with our own multipart/related Content-Type keeps it and adds the boundary.
            options.append(f"-F {shlex.quote(f'file=@{_body_file(part_type)};type={part_type}')}")
        elif example is not None:
            options.append(f"--data-binary {shlex.quote(json.dumps(example))}")
        else:
            options.append(f"--data-binary @{_body_file(media_type)}")
    return " \\\n  ".join([" ".join(c for c in command if c), *options])


def _python(
    path: str,
    method: str,
    accept: str | None,
    request_types: list[str],
    body: Mapping[str, Any],
    required: list[Mapping[str, Any]],
) -> str:
    lines = []
    url = 'f"{root}' + _PARAM.sub(lambda m: "{" + _python_name(m.group(1)) + "}", path) + '"'
    headers: dict[str, str] = {}
    if accept:
        headers["Accept"] = accept
    headers.update({str(p["name"]): "..." for p in required if p["in"] == "header"})
    extra = ""
    if request_types:
        media_type = request_types[0]
        part_type = _multipart_part_type(media_type)
        example = body.get("content", {}).get(media_type, {}).get("example")
        if part_type:
            lines += [
                "# One part per instance (PS3.18 §8.6.1.2): --boundary, part headers, blank line, the bytes.",
                f"part = Path({_body_file(part_type)!r}).read_bytes()",
                f'body = b"--example\\r\\nContent-Type: {part_type}\\r\\n\\r\\n" + part + b"\\r\\n--example--\\r\\n"',
            ]
            headers["Content-Type"] = f"{media_type}; boundary=example"
            extra = ", content=body"
        elif example is not None:
            headers["Content-Type"] = media_type
            extra = f", content={json.dumps(example)!r}"
        else:
            headers["Content-Type"] = media_type
            extra = f", content=Path({_body_file(media_type)!r}).read_bytes()"
    query = [p for p in required if p["in"] == "query"]
    params = ", params={" + ", ".join(f"{p['name']!r}: '...'" for p in query) + "}" if query else ""
    arguments = url + (f", headers={headers!r}" if headers else "") + params + extra
    if extra and method not in ("post", "put", "patch"):  # httpx.get() and the like take no body
        lines.append(f"r = httpx.request({method.upper()!r}, {arguments})")
    else:
        lines.append(f"r = httpx.{method}({arguments})")
    lines.append("print(r.status_code, r.headers.get('content-type'))")
    return "\n".join(lines)


_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 70rem; padding: 0 1.5rem 4rem; color: #222; }}
h1 {{ font-size: 1.6rem; }} h3 {{ margin: 0 0 .3rem; font-size: 1.05rem; }}
code, pre {{ font: 13px/1.4 ui-monospace, monospace; }}
pre {{ background: #f5f6f8; border: 1px solid #e1e4e8; padding: .6rem .8rem; overflow-x: auto; margin: .4rem 0; }}
pre.python {{ border-left: 3px solid #3572a5; }} pre.shell {{ border-left: 3px solid #89e051; }}
nav ul {{ columns: 2; list-style: none; padding: 0; font-size: 13px; }} nav li {{ break-inside: avoid; }}
section {{ border-top: 1px solid #e1e4e8; padding: 1rem 0; }}
.method {{ display: inline-block; min-width: 4.2em; font: bold 12px monospace; text-align: center;
  color: #fff; background: #6a737d; border-radius: 3px; padding: 1px 4px; }}
.get {{ background: #2b7bb9; }} .post {{ background: #2f9e44; }} .put {{ background: #d9480f; }}
.delete {{ background: #c92a2a; }} .options {{ background: #5f3dc4; }}
table.responses {{ border-collapse: collapse; font-size: 13px; }}
table.responses td, table.responses th {{ border: 1px solid #e1e4e8; padding: 2px 8px; text-align: left; }}
</style></head><body>"""
