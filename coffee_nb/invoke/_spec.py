"""``ModelSpec``: a candidate model as the user declares it (a spec string or an instance, and its own
settings), every setting checked when it is made; secret parameters kept as ``SecretStr``. What a chain
does with one at run time is the ``Candidate`` (``_models``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from coffee_nb._shared._validate import (
    api_key,
    http_url,
    max_tokens,
    optional_positive_int,
    temperature,
    timeout_seconds,
)
from coffee_nb.errors._errors import ConfigError, remember_secret
from coffee_nb.providers._registry import PREFILL_STYLES, accepted, parse_spec

__all__ = ["ModelSpec"]

# Parameter names that hold a secret (``api_key``, ``openai_api_key``, ``aws_secret_access_key``, ...):
# kept as pydantic ``SecretStr`` (LangChain's chat models take those) so reprs and dumps show stars.
_SECRET_PARAM = re.compile(r"(^|_)(api_?key|key|secret|token|password|passwd)$", re.IGNORECASE)
# Header names (in ``default_headers`` and the like) that carry a key: remembered for redaction.
_SECRET_HEADER = re.compile(r"^(authorization|x-api-key|api-key|x-goog-api-key|proxy-authorization)$", re.IGNORECASE)
# Parameters whose type is checked when a ModelSpec is made (else the client's constructor finds a wrong one
# at the first call, as a pydantic traceback about a class the user never named): their names in the
# LangChain chat models we build, with the check each gets. None is always accepted (the client's default).
_KEY_PARAM = re.compile(r"(^|_)api_?key$", re.IGNORECASE)
_CHECKED_PARAMS: dict[str, Any] = {
    **dict.fromkeys(("base_url", "openai_api_base", "api_base", "azure_endpoint"), http_url),
    **dict.fromkeys(("timeout", "request_timeout", "default_request_timeout"), timeout_seconds),
    **dict.fromkeys(
        ("max_tokens", "max_completion_tokens", "max_output_tokens", "max_new_tokens"),
        lambda name, value: max_tokens(value, name),
    ),
    "temperature": lambda name, value: temperature(value, name),
}


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ModelSpec:
    """A candidate model with its own settings, checked when made.

    ``model`` is a spec string or any LangChain chat model; ``name`` labels it in records.
    ``params`` go to the constructor of a model built from a spec (e.g. ``base_url``); secret ones
    (``api_key``, ``*_token``, ...) are kept as ``SecretStr``, so they never print.

    ``prefill`` says whether the model continues a final assistant message, which lets a stream that
    broke mid-answer go on where it stopped (None: as its provider declares; True: it continues the
    message as sent, like Anthropic or llama.cpp's server; ``"vllm"``: a vLLM server, asked with
    ``continue_final_message``; ``"prefix"``: the message is marked ``prefix: true``, Mistral and DeepSeek's
    prefix completion; False: never).

    ``vision`` says whether the model takes images (None: as its provider or LangChain's model profile
    says; a model known not to is skipped for a prompt with images, with the reason "no image input").
    """

    model: Any
    name: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    prefill: bool | str | None = None
    vision: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.model, str):
            parse_spec(self.model)
        elif not hasattr(self.model, "invoke"):
            raise ConfigError(
                f"a model must be a 'provider/model' string ({accepted()}) or a LangChain chat model, "
                f"got {self.model!r}"
            )
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise ConfigError(f"ModelSpec name must be a non-empty string or None, got {self.name!r}")
        label = self.name or (self.model if isinstance(self.model, str) else type(self.model).__name__)
        for attr in ("context_window", "max_output_tokens", "rpm", "tpm"):
            optional_positive_int(f"{attr} for {label}", getattr(self, attr))
        if not (self.prefill is None or isinstance(self.prefill, bool) or self.prefill in PREFILL_STYLES[1:]):
            raise ConfigError(
                f"prefill for {label} must be True, False, None, 'vllm' or 'prefix', got {self.prefill!r}"
            )
        if self.vision is not None and not isinstance(self.vision, bool):
            raise ConfigError(f"vision for {label} must be True (takes images), False or None, got {self.vision!r}")
        object.__setattr__(self, "params", _params(self.params, label))

    def __repr__(self) -> str:
        params = {k: ("**********" if _SECRET_HEADER.match(str(k)) else v) for k, v in self.params.items()}
        for k, v in params.items():
            if isinstance(v, Mapping):  # headers: keys hidden, other values shown
                params[k] = {h: ("**********" if _SECRET_HEADER.match(str(h)) else x) for h, x in v.items()}
        fields = [f"model={self.model!r}"] + [
            f"{n}={getattr(self, n)!r}"
            for n in ("name", "rpm", "tpm", "context_window", "max_output_tokens", "prefill", "vision")
            if getattr(self, n) is not None
        ]
        if params:
            fields.append(f"params={params!r}")
        return f"ModelSpec({', '.join(fields)})"


def _params(params: Any, label: str) -> Mapping[str, Any]:
    """``params`` checked (a mapping with string keys; the values of the parameters we know, see
    ``_CHECKED_PARAMS``), its secrets as ``SecretStr`` and remembered for redaction (also those in header
    mappings, which are sent as they are)."""
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise ConfigError(
            f"params for {label} must be a dict of constructor arguments with string keys, "
            f"e.g. {{'base_url': 'http://127.0.0.1:8000/v1'}}; got {params!r}"
        )
    from pydantic import SecretStr  # lazy: pydantic

    out: dict[str, Any] = {}
    for key, value in params.items():
        check = _CHECKED_PARAMS.get(key) or (api_key if _KEY_PARAM.search(key) else None)
        if check is not None and value is not None:
            check(f"params[{key!r}] for {label}", value)
        if _SECRET_PARAM.search(key) and isinstance(value, str):
            value = SecretStr(value)
        if isinstance(value, SecretStr):
            remember_secret(value)
        elif isinstance(value, Mapping):
            for header, text in value.items():
                if isinstance(header, str) and _SECRET_HEADER.match(header):
                    remember_secret(text.split(" ", 1)[-1] if isinstance(text, str) else text)
        out[key] = value
    return out  # a dict: pydantic can dump it (SecretStr as stars)
