"""Redaction: no API key in any text coffee_nb shows, stores or raises.

Two nets: key-shaped text (a known prefix and a long token), and the actual key values in use (every
provider's key variable, and the keys coffee_nb was given: ``ModelSpec`` params, chat model
instances, URL passwords). The values matter most: a server may echo a key without its prefix.
:func:`scrub` cleans an exception and its chain in place, so a provider's error can pass through
coffee_nb unwrapped and still hold no key.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Iterable, MutableMapping, Sequence
from typing import Any

from coffee_nb._shared import _config  # imports nothing of coffee_nb itself: no cycle

__all__ = ["is_clean", "redact", "remember_secret", "scrub", "secret_values"]

_KEY_PATTERN = re.compile(r"(sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{8,}|(?:Bearer|x-api-key:?)\s+[A-Za-z0-9_\-\.]{8,})")
_KEY_ENV_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
_MIN_SECRET = 8  # shorter values would redact ordinary words
_REDACTED = "[redacted]"
# Keys given to coffee_nb in this process. Kept across reset_defaults() on purpose: forgetting a key
# would only make it printable again.
_SECRETS: set[str] = set()
# attributes of exceptions that hold the text of a provider's reply (openai/anthropic: message, body)
_TEXT_ATTRS = ("message", "msg", "body", "detail", "reason", "strerror", "filename", "text")
_TEXT_ATTR_SET = frozenset(_TEXT_ATTRS)


# the prefixes of well-known key formats: a server may echo a key without it
_PREFIX = re.compile(r"^(?:sk-(?:ant-(?:[a-z]+\d*-)?|proj-|svcacct-|admin-)?|gsk_|xai-|AIza|pplx-|hf_|Bearer\s+)")


def _forms(value: str) -> set[str]:
    """``value`` as it may be echoed: whole, trimmed, and without a known key prefix."""
    out = {value, value.strip()}
    bare = _PREFIX.sub("", value.strip())
    if len(bare) >= _MIN_SECRET:
        out.add(bare)
    return {v for v in out if len(v) >= _MIN_SECRET}


def remember_secret(value: Any) -> None:
    """Redact ``value`` (a key coffee_nb was given: a ``str`` or a pydantic ``SecretStr``) from now on."""
    get = getattr(value, "get_secret_value", None)
    text = get() if callable(get) else value
    if isinstance(text, str):
        _SECRETS.update(_forms(text))


_names: tuple[int, tuple[str, ...]] = (-1, ())  # (the provider registry's generation, its key variables)
_raw_names: tuple[bytes, ...] = ()  # the same names as os.environ keeps them on POSIX (see _env)
_values: tuple[tuple[Any, ...], list[str]] = ((), [])  # (what it was computed from, the values)


def _secret_values() -> list[str]:
    """Every key value to redact, longest first (a key containing another is replaced whole).

    Runs on every failure (and every coffee_nb error's text): the variables' names are re-read only when
    the provider registry changes, the values recomputed only when a variable or a remembered key did.
    """
    global _names, _values, _raw_names
    providers = _config.PROVIDERS.ready()  # every provider's key variables, built-in ones included
    if providers.generation != _names[0]:
        names = set(_KEY_ENV_VARS)
        for provider in list(providers.values()):
            names.update(v for v in (provider.env_var, *getattr(provider, "secret_vars", ())) if v)
        _names = (providers.generation, tuple(sorted(names)))
        _raw_names = tuple(os.fsencode(n) for n in _names[1])
    key = (len(_SECRETS), _env(_names[1]))
    if key == _values[0]:
        return _values[1]
    values = set(_SECRETS)
    for name in _names[1]:
        value = os.environ.get(name)
        if value:
            values.update(_forms(value))
    result = sorted(values, key=len, reverse=True)
    _values = (key, result)
    return result


# On POSIX, the bytes mapping behind ``os.environ`` (changed in place by every ``os.environ[...] = ...``)
_ENV_DATA: dict[bytes, bytes] | None = getattr(os.environ, "_data", None) if os.name == "posix" else None
if not isinstance(_ENV_DATA, dict):
    _ENV_DATA = None


def _env(names: tuple[str, ...]) -> tuple[Any, ...]:
    """The variables' current values, to tell whether any changed: on POSIX read from the bytes mapping
    behind ``os.environ`` (0.6 µs for 16 names instead of 10 µs through ``os.environ.get``'s decoding,
    on every failure); elsewhere, or if that mapping is not there, through ``os.environ.get``."""
    data = _ENV_DATA
    if data is not None and len(_raw_names) == len(names):
        return tuple(map(data.get, _raw_names))
    return tuple(map(os.environ.get, names))


secret_values = _secret_values  # public name: read the values once, then hand them to several redact/scrub calls


def redact(text: Any, secrets: list[str] | None = None) -> str:
    """``text`` without anything that looks like an API key, nor any key value in use."""
    out = str(text)
    if "sk-" in out or "Bearer" in out or "x-api-key" in out:  # the pattern's literal starts: most texts skip it
        out = _KEY_PATTERN.sub(_REDACTED, out)
    for secret in _secret_values() if secrets is None else secrets:
        if secret in out:
            out = out.replace(secret, _REDACTED)
    return out


_MAX_DEPTH = 8  # containers nested deeper than this are left as they are (provider bodies nest 3-4 deep)


def _clean(value: Any, secrets: list[str], depth: int = 0, seen: set[int] | None = None) -> Any:
    """``value`` with its text redacted: strings and bytes, inside dicts, lists, tuples and sets (copies),
    nested exceptions (scrubbed in place) and HTTP requests and responses of a finished call (their headers,
    URL and body, in place). The very same object when nothing in it needed redacting (the common case: it
    allocates nothing)."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, (bytes, bytearray)):
        return _clean_bytes(value, secrets)
    if depth > _MAX_DEPTH or value is None or isinstance(value, (int, float)):
        return value
    kind = type(value)
    # containers are copied, never edited: a dict or list an exception carries may be someone's live state
    if kind is dict or isinstance(value, dict):
        for v in value.values():
            if _clean(v, secrets, depth + 1, seen) is not v:
                return {k: _clean(v, secrets, depth + 1, seen) for k, v in value.items()}
        return value
    if kind is list:
        for v in value:
            if _clean(v, secrets, depth + 1, seen) is not v:
                return [_clean(v, secrets, depth + 1, seen) for v in value]
        return value
    if kind in (tuple, set, frozenset):
        for v in value:
            if _clean(v, secrets, depth + 1, seen) is not v:
                return kind(_clean(v, secrets, depth + 1, seen) for v in value)
        return value
    if isinstance(value, BaseException):
        _scrub(value, secrets, set() if seen is None else seen)
        return value
    if isinstance(value, MutableMapping) and kind.__name__ == "Headers":  # httpx's: cleaned in place
        # (only header mappings: a mapping of any other kind may be live state, os.environ say, never ours to edit)
        with contextlib.suppress(Exception):
            for k, v in list(value.items()):
                if (c := _clean(v, secrets, depth + 1, seen)) is not v:
                    value[k] = c
        return value
    if hasattr(value, "headers") and (hasattr(value, "status_code") or hasattr(value, "method")):
        _clean_http(value, secrets, depth, seen)
    return value


_encoded: tuple[int, list[bytes]] = (-1, [])  # (id of the secrets list, its values as UTF-8)


def _dirty(data: bytes | bytearray, secrets: list[str]) -> bool:
    """Might ``data`` hold a key (a key-shaped start, or a key value in use)?"""
    global _encoded
    if _encoded[0] != id(secrets):
        _encoded = (id(secrets), [s.encode("utf-8", "surrogatepass") for s in secrets])
    return b"sk-" in data or b"Bearer" in data or b"x-api-key" in data or any(s in data for s in _encoded[1])


def _clean_bytes(value: bytes | bytearray, secrets: list[str]) -> bytes | bytearray:
    """Bytes (a response body) with keys redacted; the same object when it holds none."""
    if not _dirty(value, secrets):
        return value
    text = bytes(value).decode("utf-8", "surrogateescape")
    return type(value)(redact(text, secrets).encode("utf-8", "surrogateescape"))


def _clean_http(message: Any, secrets: list[str], depth: int, seen: set[int] | None) -> None:
    """An httpx/httpx2 request or response an SDK error keeps: its header values, URL (a key in the query
    string), body and request, redacted in place (a request is over: nothing sends it again). Each is
    looked at once (an SDK error holds the request twice: itself and through its response)."""
    if seen is not None:
        if id(message) in seen:
            return
        seen.add(id(message))
    headers = message.headers
    raw = getattr(headers, "raw", None)  # httpx keeps them as bytes: one search settles most
    if not isinstance(raw, list) or _dirty(b"\n".join(b"%s: %s" % pair for pair in raw), secrets):
        _clean(headers, secrets, depth + 1, seen)  # a Headers mapping: in place
    held = getattr(message, "__dict__", None)
    if not isinstance(held, dict):
        return
    url = held.get("url")
    if url is not None and not isinstance(url, str):
        text = str(url)
        if (cleaned_url := redact(text, secrets)) != text:
            with contextlib.suppress(Exception):  # a URL type that can't be rebuilt from text: left
                held["url"] = type(url)(cleaned_url)
    for name in ("_content", "_text", "_request"):  # httpx keeps the body (and its decoded text) here
        if name in held and (cleaned := _clean(held[name], secrets, depth + 1, seen)) is not held[name]:
            held[name] = cleaned
    stream = getattr(held.get("stream"), "__dict__", None)  # a body given as bytes stays in its byte stream
    if isinstance(stream, dict):
        for name, data in list(stream.items()):
            if isinstance(data, (bytes, bytearray)) and (cleaned := _clean_bytes(data, secrets)) is not data:
                stream[name] = cleaned


def scrub(exc: BaseException, secrets: list[str] | None = None, *, deep: bool = True) -> BaseException:
    """Redact keys from ``exc`` and every exception chained to it, in place: the arguments, the notes, the
    attributes that hold a provider's reply and, ``deep``, everything the exception carries as data (every
    attribute: dicts, lists, nested exceptions, the SDKs' ``response`` and ``request`` with their headers,
    URL and body). The type and the traceback stay. Returns ``exc``; an exception whose text still holds a
    key after this (a ``__str__`` of its own) is left for the caller to wrap (see :func:`is_clean`).

    ``deep=False`` cleans only the text (what ``classify`` reads on every failure, ~3 µs); the drivers
    scrub deeply whatever leaves coffee_nb (~20 µs for an SDK error, once per failed call).
    """
    _scrub(exc, _secret_values() if secrets is None else secrets, set(), deep)
    return exc


def _scrub(exc: BaseException, secrets: list[str], seen: set[int], deep: bool = True) -> None:
    for e in chained(exc, 16):
        if id(e) in seen:
            continue  # an exception that holds itself (or its chain) as data: once is enough
        seen.add(id(e))
        try:
            args = e.args
            notes = getattr(e, "__notes__", None)
            cleaned = _clean(args, secrets, 0, seen)
            if cleaned is not args:
                e.args = cleaned
            if isinstance(notes, list) and (cleaned := _clean(notes, secrets, 0, seen)) is not notes:
                notes[:] = cleaned  # the exception's own list
            first = args[0] if args else None  # SDK errors keep their message twice: as args[0] and .message
            names = _text_attrs(e)
            held = getattr(e, "__dict__", None) if deep else None
            if isinstance(held, dict) and held:
                names = set(names).union(held)
            for attr in names:
                value = getattr(e, attr, None)
                if value is None or isinstance(value, (int, float)):
                    continue
                if value is first:
                    cleaned = e.args[0]
                    if cleaned is not value:
                        setattr(e, attr, cleaned)
                elif (cleaned := _clean(value, secrets, 0, seen)) is not value:
                    setattr(e, attr, cleaned)
        except Exception:  # noqa: BLE001 - an exception that refuses changes is checked by is_clean
            pass


def _text_attrs(e: BaseException) -> Iterable[str]:
    """Which of ``_TEXT_ATTRS`` ``e`` may have: those its class defines (properties, slots, defaults) and
    those in its instance dict; all of them for a class that makes attributes up (``__getattr__``)."""
    cls: type = type(e)  # (a plain type: mypy can't see a class object as Hashable)
    own = _class_text_attrs(cls)
    found = _TEXT_ATTR_SET.intersection(getattr(e, "__dict__", ()))
    return found.union(own) if own else found


@functools.lru_cache(maxsize=256)
def _class_text_attrs(cls: type) -> tuple[str, ...]:
    # (the last two of an exception class's MRO are BaseException and object, whose lookup is the plain one)
    if any("__getattr__" in vars(k) or "__getattribute__" in vars(k) for k in cls.__mro__[:-2]):
        return _TEXT_ATTRS
    return tuple(a for a in _TEXT_ATTRS if hasattr(cls, a))


def is_clean(exc: BaseException) -> bool:
    """Is the text of ``exc`` and of every exception chained to it free of keys?"""
    secrets = _secret_values()
    for e in chained(exc, 16):
        try:
            text = str(e)
        except Exception:  # noqa: BLE001 - a broken __str__ shows no key
            continue
        if redact(text, secrets) != text:
            return False
    return True


def chained(exc: BaseException, most: int) -> Sequence[BaseException]:
    """``exc`` and the exceptions chained to it (causes and contexts, each once, at most ``most + 1``)."""
    if exc.__cause__ is None and exc.__context__ is None:
        return (exc,)  # nearly always: no set, no list
    out: list[BaseException] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen or len(seen) > most:
            continue
        seen.add(id(e))
        out.append(e)
        todo += [e.__cause__, e.__context__]
    return out
