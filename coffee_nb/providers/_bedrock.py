"""Amazon Bedrock through langchain-aws' ChatBedrockConverse (the Converse API, any Bedrock model).

Credentials come from the usual AWS chain (environment, profile, SSO, instance role, or a Bedrock API
key in AWS_BEARER_TOKEN_BEDROCK), found by botocore at call time; the region from ``region_name``,
AWS_REGION / AWS_DEFAULT_REGION or the profile. botocore is not httpx: its own connection pool, with
retries off and the attempt's timeout in a ``botocore.config.Config`` (a ``config`` of yours is merged
over it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coffee_nb.errors._errors import ErrorClass
from coffee_nb.providers._base import MissingSettingError, Setting, missing_extra
from coffee_nb.providers._params import Params
from coffee_nb.providers._registry import register_provider

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from coffee_nb.providers._registry import BuildSettings

__all__ = ["CODES", "ERRORS", "register"]

E = ErrorClass
_AUTH = (
    "NoCredentialsError",
    "PartialCredentialsError",
    "CredentialRetrievalError",
    "NoAuthTokenError",
    "TokenRetrievalError",
    "SSOError",
    "SSOTokenLoadError",
    "UnauthorizedSSOTokenError",
    "UnknownCredentialError",
    "ProfileNotFound",
    "RefreshWithMFAUnsupportedError",
    "MetadataRetrievalError",
    "LoginError",
    "NoRegionError",  # a setting like a key: missing, the chain falls back past the model
)
ERRORS: dict[str, ErrorClass | None] = {
    # botocore's own: client-side configuration and use unless said otherwise
    "botocore.BotoCoreError": E.BAD_REQUEST,
    **{f"botocore.{name}": E.AUTH for name in _AUTH},
    "botocore.MissingServiceIdError": E.BAD_REQUEST,  # (two that are not BotoCoreErrors)
    "botocore.UndefinedModelAttributeError": E.BAD_REQUEST,
    "botocore.ConnectionError": E.CONNECTION,  # EndpointConnectionError, ConnectionClosedError, SSLError, proxy
    "botocore.HTTPClientError": E.CONNECTION,
    "botocore.ConnectTimeoutError": E.TIMEOUT,
    "botocore.ReadTimeoutError": E.TIMEOUT,
    "botocore.ResponseStreamingError": E.CONNECTION,
    "botocore.IncompleteReadError": E.CONNECTION,
    "botocore.ChecksumError": E.SERVER,
    "botocore.FlexibleChecksumError": E.SERVER,
    "botocore.CapacityNotAvailableError": E.RATE_LIMIT,  # the client's retry quota ran out
    # the service's: by the error code (below), else the HTTP status
    "botocore.ClientError": None,
    "botocore.EventStreamError": None,  # an error event in the middle of converse_stream
    # botocore raises the service's modelled errors as classes named after the code (botocore.errorfactory)
    "botocore.ThrottlingException": E.RATE_LIMIT,
    "botocore.ServiceQuotaExceededException": E.RATE_LIMIT,
    "botocore.ServiceUnavailableException": E.SERVER,
    "botocore.InternalServerException": E.SERVER,
    "botocore.ModelNotReadyException": E.SERVER,
    "botocore.ModelErrorException": E.SERVER,
    "botocore.ModelStreamErrorException": E.SERVER,
    "botocore.ModelTimeoutException": E.TIMEOUT,
    "botocore.AccessDeniedException": E.AUTH,
    "botocore.ValidationException": E.BAD_REQUEST,  # "Input is too long..." reads as context_overflow
    "botocore.ResourceNotFoundException": E.NOT_FOUND,
    "botocore.ConflictException": E.SERVER,
}
# Error codes in ClientError.response["Error"]["Code"] (stream error events spell them lower camelCase:
# codes are compared lower-cased). The Stubber and some endpoints send them with HTTP 400: the code wins.
CODES = {
    "ThrottlingException": E.RATE_LIMIT,
    "TooManyRequestsException": E.RATE_LIMIT,
    "ServiceQuotaExceededException": E.RATE_LIMIT,
    "ServiceUnavailableException": E.SERVER,
    "InternalServerException": E.SERVER,
    "ModelNotReadyException": E.SERVER,
    "ModelErrorException": E.SERVER,
    "ModelStreamErrorException": E.SERVER,
    "ModelTimeoutException": E.TIMEOUT,
    "AccessDeniedException": E.AUTH,
    "UnrecognizedClientException": E.AUTH,
    "ExpiredTokenException": E.AUTH,
    "InvalidSignatureException": E.AUTH,
    "ValidationException": E.BAD_REQUEST,
    "ResourceNotFoundException": E.NOT_FOUND,
}
# Converse takes maxTokens, temperature and topP (langchain-aws camel-cases snake_case kwargs)
PARAMS = Params(sampling=frozenset({"temperature", "top_p"}))
REGION = Setting(("AWS_REGION", "AWS_DEFAULT_REGION"), "region_name", "an AWS region (or one in your AWS profile)")
_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK")


def _region(params: Mapping[str, Any]) -> str | None:
    given = params.get("region_name") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if given:
        return str(given)
    try:  # the profile's (reads ~/.aws/config; never the network)
        import botocore.session  # lazy: botocore

        found = botocore.session.Session(profile=params.get("credentials_profile_name")).get_config_variable("region")
    except Exception:  # noqa: BLE001 - a broken profile: no region, said as such
        return None
    return str(found) if found else None


def _build(model: str, key: str | None, s: BuildSettings) -> BaseChatModel:
    try:
        from botocore.config import Config  # lazy: botocore
        from langchain_aws import ChatBedrockConverse  # lazy: langchain_aws
    except ImportError as exc:
        raise missing_extra("bedrock", "bedrock") from exc
    from coffee_nb.providers._guard import guarded  # lazy: langchain_core

    params = dict(s.params)
    region = _region(params)
    if region is None:
        raise MissingSettingError("bedrock", REGION)
    ours = Config(
        connect_timeout=min(10.0, s.timeout),
        read_timeout=s.timeout,
        retries={"total_max_attempts": 1, "mode": "standard"},  # one retry loop: coffee_nb's
    )
    given = params.pop("config", None)
    kwargs: dict[str, Any] = {
        "model": model,
        "region_name": region,
        "config": ours.merge(given) if given is not None else ours,
        **params,
    }
    return ChatBedrockConverse(**guarded(kwargs))


def _status() -> str:
    """Where AWS credentials would come from (names only, and no network: an instance role is found at
    call time), and the region."""
    env = os.environ
    files = [Path(env.get(v, d)).expanduser() for v, d in _FILES]
    if env.get("AWS_BEARER_TOKEN_BEDROCK"):
        how = "AWS_BEARER_TOKEN_BEDROCK"
    elif env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        how = "AWS_ACCESS_KEY_ID"
    elif env.get("AWS_PROFILE"):
        how = "AWS_PROFILE"
    elif env.get("AWS_WEB_IDENTITY_TOKEN_FILE") or env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        how = "a role"
    elif any(f.is_file() for f in files):
        how = "~/.aws"
    else:
        return "no (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or AWS_BEARER_TOKEN_BEDROCK)"
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    return f"yes ({how}{f', {region}' if region else ''})"


_FILES = (("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"), ("AWS_CONFIG_FILE", "~/.aws/config"))


def _prefill(model: str) -> bool:
    # Claude continues a final assistant turn through Converse; other families are not known to
    return "anthropic." in model


def register() -> None:
    register_provider(
        "bedrock",
        _build,
        secret_vars=_SECRETS,
        prefill=_prefill,
        # a stream's end is ``stopReason`` (not a key the runner reads as a finish reason)
        errors=ERRORS,
        codes=CODES,
        params=PARAMS,
        classes=("ChatBedrockConverse", "ChatBedrock"),
        extra="bedrock",
        needs="langchain_aws",
        examples=("amazon.nova-lite-v1:0", "anthropic.claude-3-5-haiku-20241022-v1:0"),
        status=_status,
    )
