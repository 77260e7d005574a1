"""Schemas for ``map_rows(schema=...)``: each field becomes a typed column of the result.

A schema is a pydantic model, a JSON schema (a dict with ``properties``), a dict of name → type
(``{"label": str, "score": float}``), or the same as text (``"label:str, score:float"`` or JSON). Chains
of OpenAI-compatible models get it as structured output (``response_format``); other chains get it as an
instruction in the prompt. Either way the answer is parsed and validated here: invalid JSON or a wrong
field is that row's error, never a crash.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

from coffee_nb._shared._format import parse_json
from coffee_nb.errors._errors import ConfigError

__all__ = ["Schema"]

_NAMED_TYPES: dict[str, Any] = {
    "str": str,
    "string": str,
    "int": int,
    "integer": int,
    "float": float,
    "number": float,
    "bool": bool,
    "boolean": bool,
    "list": list,
    "array": list,
    "dict": dict,
    "object": dict,
}
_ACCEPTED = (
    "a pydantic model, a JSON schema (a dict with 'properties'), a dict of column name → type like "
    "{'label': str, 'score': float}, or text like 'label:str, score:float'"
)
# Chains whose every model takes OpenAI's ``response_format={"type": "json_schema", ...}``.
_NATIVE_PROVIDERS = frozenset({"openai", "sandbox"})
_NATIVE_CLASSES = frozenset({"ChatOpenAI", "AzureChatOpenAI"})


class Schema:
    """A validated schema: its pydantic model, the columns' dtypes, and how to ask for it."""

    __slots__ = ("spec", "model", "fields", "json_schema", "key")

    def __init__(self, spec: Any) -> None:
        self.spec = spec  # as given: what a Dask worker rebuilds the schema from
        self.model = _to_model(spec)
        self.fields: tuple[str, ...] = tuple(self.model.model_fields)
        if not self.fields:
            raise ConfigError("the schema has no fields: name at least one column, e.g. {'label': str}")
        self.json_schema: dict[str, Any] = self.model.model_json_schema()
        self.key = json.dumps(self.json_schema, sort_keys=True)  # part of each row's cache key

    def __repr__(self) -> str:
        return f"Schema({', '.join(self.fields)})"

    def dtypes(self) -> dict[str, str]:
        """pandas dtype per field: nullable ints, floats and booleans (failed rows are NA), category for a
        Literal of strings, the default string dtype for str, object for anything nested."""
        return {name: _dtype(info.annotation) for name, info in self.model.model_fields.items()}

    def response_format(self) -> dict[str, Any]:
        return {"type": "json_schema", "json_schema": {"name": "row", "schema": self.json_schema, "strict": False}}

    def instruction(self) -> str:
        return "\n\nAnswer with one JSON object and nothing else, matching this JSON schema:\n" + json.dumps(
            self.json_schema, ensure_ascii=False
        )

    def parse(self, text: str) -> dict[str, Any]:
        """The answer's fields; ValueError saying what is wrong (not JSON, a missing or mistyped field)."""
        from pydantic import ValidationError  # lazy: pydantic

        data = parse_json(text)
        try:
            parsed = self.model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "the answer"
            more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            raise ValueError(f"the answer does not match the schema: {where}: {first['msg']}{more}") from None
        values: dict[str, Any] = parsed.model_dump()
        return values

    @staticmethod
    def native(candidates: list[Any]) -> bool:
        """Does every model of the chain take OpenAI-style structured output?"""
        for cand in candidates:
            if cand.instance is None:
                if cand.provider not in _NATIVE_PROVIDERS:
                    return False
            elif type(cand.instance).__name__ not in _NATIVE_CLASSES:
                return False
        return True


def _to_model(spec: Any) -> Any:
    from pydantic import BaseModel  # lazy: pydantic

    if isinstance(spec, type) and issubclass(spec, BaseModel):
        return spec
    if isinstance(spec, str):
        spec = _from_text(spec)
    if not isinstance(spec, Mapping) or not spec:
        raise ConfigError(f"schema must be {_ACCEPTED}; got {spec!r:.200}")
    if "properties" in spec or spec.get("type") == "object":
        return _from_json_schema(spec)
    fields: dict[str, Any] = {}
    for name, kind in spec.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"schema field names must be identifiers, got {name!r}")
        fields[name] = (_named(kind, name), ...)
    return _create("Row", fields)


def _from_text(text: str) -> Any:
    text = text.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"the schema is not valid JSON ({exc.msg} at column {exc.colno})") from None
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, kind = (s.strip() for s in part.partition(":"))
        if not sep:
            raise ConfigError(f"schema text is 'name:type, ...' (types: str, int, float, bool), got {part!r}")
        out[name] = kind
    return out


def _named(kind: Any, name: str) -> Any:
    if isinstance(kind, str):
        found = _NAMED_TYPES.get(kind.strip().lower())
        if found is None:
            raise ConfigError(f"unknown type {kind!r} for schema field {name!r}: use str, int, float, bool, list, dict")
        return found
    if isinstance(kind, type) or typing.get_origin(kind) is not None:
        return kind
    raise ConfigError(f"schema field {name!r} needs a type (str, int, float, bool, a Literal, ...), got {kind!r}")


def _from_json_schema(schema: Mapping[str, Any]) -> Any:
    props = schema.get("properties")
    if not isinstance(props, Mapping) or not props:
        raise ConfigError("the JSON schema needs 'properties' naming at least one field")
    required = set(schema.get("required", props))
    fields: dict[str, Any] = {}
    for name, prop in props.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"schema field names must be identifiers, got {name!r}")
        kind = _json_type(prop if isinstance(prop, Mapping) else {})
        fields[name] = (kind, ...) if name in required else (kind | None, None)
    title = schema.get("title")
    return _create(title if isinstance(title, str) and title.isidentifier() else "Row", fields)


def _json_type(prop: Mapping[str, Any]) -> Any:
    enum = prop.get("enum")
    if isinstance(enum, list) and enum:
        return Literal[tuple(enum)]
    kind = prop.get("type", "string")
    nullable = isinstance(kind, list) and "null" in kind
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    found = _NAMED_TYPES.get(kind) if isinstance(kind, str) else None
    if found is None:
        raise ConfigError(f"unsupported JSON schema type {kind!r}: use string, integer, number, boolean, array, object")
    return found | None if nullable else found


def _create(name: str, fields: dict[str, Any]) -> Any:
    from pydantic import create_model  # lazy: pydantic

    try:
        return create_model(name, **fields)
    except Exception as exc:  # noqa: BLE001 - pydantic's many schema errors: one clear message instead
        raise ConfigError(f"schema is not usable: {exc}") from None


def _dtype(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):  # Optional[X]: X's column (missing values are NA anyway)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _dtype(args[0])
        return "object"
    if origin is Literal and all(isinstance(a, str) for a in typing.get_args(annotation)):
        return "category"
    return {bool: "boolean", int: "Int64", float: "Float64", str: "str"}.get(annotation, "object")
