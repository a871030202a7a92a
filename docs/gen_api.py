"""Write ``docs/api.md``, the HTTP API reference, from the service's own OpenAPI schema.

Why generated: the routes, parameters and bodies are declared once, in the FastAPI routers and
pydantic schemas; a hand-written reference would drift from them. The OpenAPI schema does not
say which role may call a route (roles are a dependency, not an OpenAPI security scheme), so
that column is read from the same app: each route's ``require(<permission>)`` dependency,
mapped to the roles whose grants hold the permission.

    python docs/gen_api.py            # rewrite docs/api.md
    python docs/gen_api.py --check    # exit 1 when docs/api.md is stale (what the test does)

The app is built over a throwaway SQLite file; nothing else is touched.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent / "api.md"
METHOD_ORDER = ("get", "post", "put", "patch", "delete")
CONVERTOR = re.compile(r"\{(\w+):\w+\}")


def build_app_schema() -> tuple[dict[str, Any], dict[tuple[str, str], str]]:
    """The OpenAPI document and ``{(METHOD, path): permission}`` of a freshly built app."""
    from fastapi.routing import APIRoute

    from lacuna_orchestration.server.app import create_app
    from lacuna_orchestration.server.config import ServerSettings
    from lacuna_orchestration.settings import Settings

    with tempfile.TemporaryDirectory(prefix="lacuna-api-") as tmp:
        core = Settings.load(database_url=f"sqlite:///{Path(tmp) / 'api.db'}")
        app = create_app(ServerSettings.load(core=core, archive_dir=str(Path(tmp) / "a")))
        schema = app.openapi()
        permissions: dict[tuple[str, str], str] = {}
        for route in app.routes:
            if isinstance(route, APIRoute):
                needed = _required_permission(route.dependant.dependencies)
                path = CONVERTOR.sub(r"{\1}", route.path)  # OpenAPI drops ":path"
                if not needed and path.startswith("/api/"):
                    raise SystemExit(f"{path}: no require(<permission>) dependency found; "
                                     "every /api route must name its permission")
                for method in route.methods:
                    permissions[(method.upper(), path)] = needed
        app.state.lacuna.governors.close()
        app.state.lacuna.system_engine.dispose()
    return schema, permissions


def _required_permission(dependencies: Iterable[Any]) -> str:
    """The permission named by a ``require_<permission>`` dependency, searched depth first;
    ``""`` for an open route."""
    from lacuna_orchestration.server.auth import Permission

    for dep in dependencies:
        name = getattr(dep.call, "__name__", "")
        if name.startswith("require_"):
            return Permission[name.removeprefix("require_").upper()].value
        found = _required_permission(dep.dependencies)
        if found:
            return found
    return ""


def roles_with(permission: str) -> str:
    from lacuna_orchestration.server.auth import GRANTS, Permission

    if not permission:
        return "none (no key)"
    wanted = Permission(permission)
    return ", ".join(role.value for role, grants in GRANTS.items() if wanted in grants)


# -- rendering --------------------------------------------------------------------------------


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _type(schema: Mapping[str, Any]) -> str:
    """A short type: ``string``, ``integer``, ``array of string``, a schema name, unions."""
    if "$ref" in schema:
        return f"[{schema['$ref'].rsplit('/', 1)[-1]}](#{_anchor(schema['$ref'])})"
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in schema:
            parts = [_type(s) for s in schema[combinator] if s.get("type") != "null"]
            optional = any(s.get("type") == "null" for s in schema[combinator])
            return " or ".join(parts) + (" (nullable)" if optional else "")
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    return str(kind)


def _anchor(ref: str) -> str:
    return "schema-" + ref.rsplit("/", 1)[-1].lower()


def _constraints(schema: Mapping[str, Any]) -> str:
    bits = []
    for key, label in (("minimum", "≥"), ("maximum", "≤"), ("exclusiveMinimum", ">"),
                       ("minLength", "length ≥"), ("maxLength", "length ≤")):
        if key in schema:
            bits.append(f"{label} {schema[key]}")
    if "default" in schema and schema["default"] is not None:
        default = schema["default"]
        bits.append(f"default `{default}`" if default != "" else 'default `""`')
    return ", ".join(bits)


def _operation(method: str, path: str, op: Mapping[str, Any], permission: str) -> list[str]:
    out = [f"### `{method.upper()} {path}`", ""]
    if op.get("summary"):
        out += [f"**{op['summary']}**", ""]
    if op.get("description") and op["description"] != op.get("summary"):
        out += [op["description"].strip(), ""]
    out += [f"Permission: `{permission}` (roles: {roles_with(permission)})" if permission
            else "Permission: none — no API key needed", ""]
    params = op.get("parameters", [])
    if params:
        out += ["| parameter | in | type | required | notes |", "|---|---|---|---|---|"]
        for p in params:
            schema = p.get("schema", {})
            notes = "; ".join(x for x in (p.get("description", ""), _constraints(schema)) if x)
            out.append(f"| `{p['name']}` | {p['in']} | {_cell(_type(schema))} | "
                       f"{'yes' if p.get('required') else 'no'} | {_cell(notes)} |")
        out.append("")
    body = op.get("requestBody")
    if body:
        for media, content in body.get("content", {}).items():
            out += [f"Request body ({media}): {_type(content.get('schema', {}))}", ""]
    elif method == "post" and path.startswith("/api/v1/lineage"):
        out += [("Request body: OpenLineage JSON (validated against the 2-0-2 spec by the "
                 "core, not by an OpenAPI schema); `Content-Encoding: gzip` accepted."), ""]
    out += ["| status | meaning |", "|---|---|"]
    for status, response in sorted(op.get("responses", {}).items()):
        schemas = [_type(c["schema"]) for c in response.get("content", {}).values()
                   if c.get("schema")]
        meaning = response.get("description", "")
        if schemas and schemas[0] != "any" and "#" in schemas[0]:
            meaning += f" — {schemas[0]}"
        out.append(f"| {status} | {_cell(meaning)} |")
    return [*out, ""]


def _schema_section(name: str, schema: Mapping[str, Any]) -> list[str]:
    out = [f'<a id="schema-{name.lower()}"></a>', f"### {name}", ""]
    if schema.get("description"):
        out += [" ".join(schema["description"].split()), ""]
    properties = schema.get("properties", {})
    if "enum" in schema and not properties:
        return [*out, "One of: " + ", ".join(f"`{v}`" for v in schema["enum"]), ""]
    required = set(schema.get("required", ()))
    out += ["| field | type | required | notes |", "|---|---|---|---|"]
    for field, spec in properties.items():
        notes = "; ".join(x for x in (spec.get("description", ""), _constraints(spec)) if x)
        out.append(f"| `{field}` | {_cell(_type(spec))} | {'yes' if field in required else 'no'}"
                   f" | {_cell(notes)} |")
    return [*out, ""]


def render(schema: Mapping[str, Any], permissions: Mapping[tuple[str, str], str]) -> str:
    info = schema["info"]
    out = [
        "# HTTP API reference",
        "",
        ("<!-- Generated by docs/gen_api.py from the service's OpenAPI schema; do not edit. "
         "tests/docs/test_api_reference.py fails when this file is stale. -->"),
        "",
        f"{info['title']} {info['version']} — {info.get('summary', '')}",
        "",
        ("Every `/api/v1` route takes an API key as `Authorization: Bearer <key>` (or "
         "`X-API-Key: <key>`); a key belongs to one tenant and has one role (`lacuna keys "
         "create`, or `POST /api/v1/keys`). A missing or unknown key is 401, a role without the "
         "route's permission 403 (audited as `access.denied`). Errors are JSON: "
         "[ErrorBody](#schema-errorbody). The running service serves the same schema at "
         "`/openapi.json` and an interactive page at `/docs`."),
        "",
    ]
    by_tag: dict[str, list[tuple[str, str, Mapping[str, Any]]]] = {}
    for path, operations in schema["paths"].items():
        for method in METHOD_ORDER:
            if method in operations:
                op = operations[method]
                by_tag.setdefault((op.get("tags") or ["other"])[0], []).append((method, path, op))
    out += ["| method | path | summary | permission |", "|---|---|---|---|"]
    for tag, ops in by_tag.items():
        for method, path, op in ops:
            perm = permissions.get((method.upper(), path), "")
            out.append(f"| {method.upper()} | `{path}` | {_cell(op.get('summary', ''))} | "
                       f"{f'`{perm}`' if perm else 'none'} |")
    out.append("")
    for tag, ops in by_tag.items():
        out += [f"## {tag[:1].upper()}{tag[1:]}", ""]
        for method, path, op in ops:
            out += _operation(method, path, op, permissions.get((method.upper(), path), ""))
    out += ["## Schemas", ""]
    for name, spec in sorted(schema.get("components", {}).get("schemas", {}).items()):
        out += _schema_section(name, spec)
    return "\n".join(out).rstrip() + "\n"


def generate() -> str:
    schema, permissions = build_app_schema()
    return render(schema, permissions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate docs/api.md from the OpenAPI schema.")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if docs/api.md differs from what would be generated")
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.is_file() else ""
        if current != text:
            print(f"{args.output} is stale: run python docs/gen_api.py", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
