"""What the sandbox answers: request validation with OpenAI's wording, deterministic reply text (a judge's
verdict for a judge's request), tool calls and schema-shaped JSON. Pure functions of the request (the
server adds I/O, faults and latency)."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Mapping
from typing import Any

from coffee_nb._shared._format import content_text
from coffee_nb.pricing._tokens import _encoding, count_tokens
from coffee_nb.sandbox._catalog import ENCODING, SandboxModel
from coffee_nb.sandbox._faults import Fault
from coffee_nb.sandbox._judge import judge_reply

__all__ = [
    "BadRequestError",
    "answer",
    "error_body",
    "example_for",
    "fault_reply",
    "model_of",
    "prompt_hints",
    "reply_text",
    "tool_call",
    "validate",
]

_WORDS = (  # noqa: SIM905 - a sentence reads better than a list of 60 strings
    "the model answers offline with deterministic text so notebooks stay reproducible and every number "
    "stays honest while budgets latency tokens and costs flow through the same path as real providers "
    "coffee is brewing data science needs careful measurement of where money and seconds go fallback "
    "chains survive outages retries respect deadlines cooldowns protect flaky services streaming shows "
    "tokens as they arrive "
).split()

_ROLES = {"system", "user", "assistant", "tool", "developer", "function"}


def error_body(
    status: int, message: str, *, type_: str, code: str | None = None, param: str | None = None
) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": type_, "param": param, "code": code}}


def model_of(body: bytes) -> str | None:
    """The model an (invalid) request named, for the request log."""
    try:
        model = json.loads(body).get("model")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    return model.removeprefix("sandbox/") if isinstance(model, str) else None


class BadRequestError(Exception):
    """A request the real API would refuse with a 400 (what the sandbox validates)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def example_for(
    schema: Mapping[str, Any],
    defs: Mapping[str, Any],
    numbers: list[float] | None = None,
    strings: list[str] | None = None,
) -> Any:
    """A deterministic value matching a JSON schema (for tool calls and structured output).

    Numbers and quoted strings found in the prompt fill numeric and string fields in order, the
    way a model would pick them up.
    """
    numbers = [] if numbers is None else numbers
    strings = [] if strings is None else strings
    if "$ref" in schema:
        return example_for(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), defs, numbers, strings)
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example_for(schema[key][0], defs, numbers, strings)
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: example_for(v, defs, numbers, strings) for k, v in props.items()}
    if kind == "array":
        return [example_for(schema.get("items", {}), defs, numbers, strings)]
    if kind in ("integer", "number") and numbers:
        n = numbers.pop(0)
        return int(n) if kind == "integer" else n
    if kind == "string" and strings:
        return strings.pop(0)
    return {"string": "sandbox", "integer": 1, "number": 1.0, "boolean": True, "null": None}.get(kind, "sandbox")


def prompt_hints(text: str) -> tuple[list[float], list[str]]:
    """Numbers and quoted strings in the prompt, in order: what a model would copy into fields."""
    numbers = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", text)]
    strings = [a or b for a, b in re.findall(r"'([^']+)'|\"([^\"]+)\"", text)]
    return numbers, strings


def validate(body: bytes) -> dict[str, Any]:
    """The parsed request, or :class:`BadRequestError` with OpenAI's wording."""
    try:
        req = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequestError(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
            "HTTP library correctly. The OpenAI API expects a JSON payload.)"
        ) from None
    if not isinstance(req, dict):
        raise BadRequestError("The request body must be a JSON object.")
    if not isinstance(req.get("model"), str) or not req["model"]:
        raise BadRequestError("you must provide a model parameter", param="model")
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequestError("'messages' must be a non-empty array of message objects.", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise BadRequestError(
                f"Invalid value for 'messages[{i}].role': expected one of {sorted(_ROLES)}.",
                param=f"messages[{i}].role",
            )
    t = req.get("temperature")
    if t is not None and (not isinstance(t, (int, float)) or not 0 <= t <= 2):
        raise BadRequestError(f"Invalid 'temperature': {t!r}. Expected a number between 0 and 2.", param="temperature")
    for key in ("max_tokens", "max_completion_tokens"):
        v = req.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise BadRequestError(f"Invalid '{key}': {v!r}. Expected an integer >= 1.", param=key)
    n = req.get("n")
    if n not in (None, 1):
        raise BadRequestError("The sandbox supports n=1 only.", param="n")
    return req


def reply_text(model: SandboxModel, messages: list[dict[str, Any]], prompt: str) -> str:
    """The model's deterministic answer to ``messages`` (the echo model repeats the prompt; a judge's
    request for a pair of answers gets a verdict, see ``coffee_nb.sandbox._judge``)."""
    if model.echo:
        return prompt
    verdict = judge_reply(prompt)
    if verdict is not None:
        return verdict
    digest = hashlib.sha256(f"{model.name}\0{json.dumps(messages, sort_keys=True)}".encode()).digest()
    rng = random.Random(digest)
    words = [rng.choice(_WORDS) for _ in range(model.reply_tokens)]
    words[0] = words[0].capitalize()
    snippet = " ".join(prompt.split())[:60]
    return f"[sandbox/{model.name}] You said: {snippet!r}. " + " ".join(words) + "."


def tool_call(req: dict[str, Any], call_id: str) -> dict[str, Any] | None:
    """Like an eager agent model: when tools are bound and the user just spoke, call the tool whose
    name and description share the most words with the message; answer in text after a tool result."""
    tools = [t.get("function", {}) for t in req.get("tools") or [] if isinstance(t, dict)]
    choice = req.get("tool_choice")
    last = req["messages"][-1]
    if not tools or choice == "none" or last.get("role") != "user":
        return None
    text = content_text(last.get("content"))
    words = set(re.findall(r"\w+", text.lower()))

    def overlap(fn: dict[str, Any]) -> int:
        name = str(fn.get("name", ""))
        own = set(re.findall(r"\w+", f"{name.replace('_', ' ')} {fn.get('description', '')}".lower()))
        return len(own & words) + (10 if name and name in text else 0)

    fn = max(tools, key=overlap)
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        fn = next((t for t in tools if t.get("name") == wanted), fn)
    params = fn.get("parameters") or {}
    numbers, strings = prompt_hints(text)
    args = example_for(params, params.get("$defs", {}), numbers, strings)
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": fn.get("name", "tool"), "arguments": json.dumps(args)},
    }


def answer(
    model: SandboxModel,
    req: dict[str, Any],
    prompt_tokens: int,
    max_tokens: int | None,
    *,
    reply: Callable[[SandboxModel, dict[str, Any], str], str],
    tool: Callable[[dict[str, Any]], dict[str, Any] | None] | None,
) -> tuple[str, dict[str, Any] | None, str, dict[str, Any]]:
    """(text, tool call, finish reason, usage) of the answer to ``req``.

    A final assistant message is a prefill: the answer continues it (the rest of the same reply, word
    by word). ``stop`` sequences cut the text, ``max_tokens`` truncates it (finish reason ``length``).
    """
    messages = req["messages"]
    prefill = messages[-1].get("role") == "assistant"
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), messages[-1])
    call = tool(req) if tool is not None else None
    asked = {**req, "messages": messages[:-1]} if prefill else req  # the answer the prefill is part of
    text = "" if call else reply(model, asked, content_text(last_user.get("content")))
    if prefill:  # continue the assistant's text: the rest of this model's answer, word by word
        done = len(content_text(messages[-1].get("content")).split())
        rest = text.split(" ")[done:]
        text = (" " + " ".join(rest)) if rest else ""
    if not call:
        fmt = req.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema") or {}
            numbers, strings = prompt_hints(content_text(last_user.get("content")))
            text = json.dumps(example_for(schema, schema.get("$defs", {}), numbers, strings))
        elif fmt.get("type") == "json_object":
            text = json.dumps({"answer": text})
    finish = "calls" if call else "stop"
    stop = req.get("stop")
    for s in [stop] if isinstance(stop, str) else (stop or []):
        if s and s in text:
            text = text[: text.index(s)]
    completion_tokens = count_tokens(text, ENCODING)
    if max_tokens is not None and completion_tokens > max_tokens:
        enc = _encoding(ENCODING)
        text = enc.decode(enc.encode_ordinary(text)[:max_tokens])
        completion_tokens = max_tokens
        finish = "length"
    if call:
        completion_tokens = count_tokens(call["function"]["arguments"], ENCODING) + 3
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }
    return text, call, finish, usage


# fault -> (status, OpenAI-style error: message, type, code, param); "{window}" and "{model}" are filled in
_FAULT_REPLIES: dict[str, tuple[int, str, str, str | None, str | None]] = {
    "rate_limit": (
        429,
        "Rate limit reached for {model} (sandbox). Please try again in {retry:g}s.",
        "requests",
        "rate_limit_exceeded",
        None,
    ),
    "server_error": (500, "The server had an error while processing your request.", "server_error", None, None),
    "overloaded": (
        503,
        "The engine is currently overloaded, please try again later.",
        "server_error",
        "overloaded",
        None,
    ),
    "auth": (
        401,
        "Incorrect API key provided. You can find your API key in your account settings.",
        "invalid_request_error",
        "invalid_api_key",
        None,
    ),
    "context_overflow": (
        400,
        "This model's maximum context length is {window} tokens. However, your messages resulted in more tokens.",
        "invalid_request_error",
        "context_length_exceeded",
        "messages",
    ),
    "content_filter": (
        400,
        "The response was filtered due to the prompt triggering the content management policy.",
        "invalid_request_error",
        "content_filter",
        "prompt",
    ),
}


def fault_reply(fault: Fault, model: SandboxModel) -> tuple[int, dict[str, Any], list[tuple[str, str]]] | None:
    """(status, body, headers) of a fault answered with an error response; None for the others."""
    spec = _FAULT_REPLIES.get(fault.kind)
    if spec is None:
        return None
    status, message, type_, code, param = spec
    retry = 1.0 if fault.seconds is None else fault.seconds
    text = message.format(model=model.name, retry=retry, window=model.context_window)
    headers = [("retry-after", f"{retry:g}")] if fault.kind == "rate_limit" else []
    return (*error_body(status, text, type_=type_, code=code, param=param), headers)
