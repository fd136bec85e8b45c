"""``/docs``: the API's OpenAPI document as a page rendered here. FastAPI's own pages load Swagger
UI or ReDoc from a CDN, which a network without internet cannot reach; this page needs nothing
but the server (the machine-readable document stays at ``/openapi.json``)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from highmark import __version__

router = APIRouter(include_in_schema=False)
METHODS = ("get", "post", "put", "patch", "delete")


@router.get("/docs")
def docs(request: Request) -> Response:
    from highmark.api.dashboard import templates

    spec = request.app.openapi()
    operations = []
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is not None:
                operations.append(_operation(spec, path, method, operation))
    context = {
        "spec": spec,
        "operations": operations,
        "version": __version__,
        "user": None,
        "no_auth": request.app.state.no_auth,
        "live": False,
        "path": "/docs",
    }
    return templates.TemplateResponse(request, "docs.html", context)


def _operation(spec: dict[str, Any], path: str, method: str, op: dict[str, Any]) -> dict[str, Any]:
    body = None
    content = (op.get("requestBody") or {}).get("content", {})
    if "application/json" in content:
        body = _schema_text(spec, content["application/json"].get("schema", {}))
    admin = "(admin)" in (op.get("summary") or "")
    return {
        "method": method.upper(),
        "path": path,
        "summary": (op.get("summary") or "").replace(" (admin)", ""),
        "description": op.get("description"),
        "scope": "admin" if admin else ("none" if path == "/healthz" else "read"),
        "parameters": [
            {
                "name": p["name"],
                "in": p["in"],
                "required": p.get("required", False),
                "type": _type(spec, p.get("schema", {})),
                "description": p.get("description") or (p.get("schema") or {}).get("description"),
            }
            for p in op.get("parameters", [])
        ],
        "body": body,
        "responses": [
            (code, response.get("description", ""))
            for code, response in op.get("responses", {}).items()
        ],
    }


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        resolved: dict[str, Any] = spec.get("components", {}).get("schemas", {}).get(name, {})
        return resolved
    return schema


def _type(spec: dict[str, Any], schema: dict[str, Any]) -> str:
    schema = _resolve(spec, schema)
    if "anyOf" in schema:
        return " | ".join(_type(spec, s) for s in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    return str(schema.get("type", "object"))


def _schema_text(spec: dict[str, Any], schema: dict[str, Any]) -> str:
    """A JSON body's fields, one a line: name: type — description."""
    schema = _resolve(spec, schema)
    if "anyOf" in schema:
        schema = next((_resolve(spec, s) for s in schema["anyOf"] if s.get("type") != "null"), {})
    required = set(schema.get("required", []))
    lines = []
    for name, field in schema.get("properties", {}).items():
        optional = "" if name in required else " (optional)"
        description = field.get("description", "")
        lines.append(
            f"{name}: {_type(spec, field)}{optional}" + (f" — {description}" if description else "")
        )
    return "\n".join(lines)
