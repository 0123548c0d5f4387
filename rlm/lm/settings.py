"""Language-model providers: where LM calls go, and under which limits and prices.

A *provider* is an OpenAI-compatible endpoint (vLLM, SGLang, Ollama, OpenAI, OpenRouter…). The
default one comes from the environment::

    RLM_LM__BASE_URL=http://127.0.0.1:8080/v1 RLM_LM__MODEL=gpt-4o-mini rlm serve

(``RLM_LM__API_KEY``, falling back to ``OPENAI_API_KEY``). Several named providers come from a
YAML file named by ``RLM_LM__CONFIG``::

    providers:
      - name: local
        baseUrl: http://127.0.0.1:8080/v1
        apiKeyEnv: LOCAL_LM_KEY        # the *name* of the variable that holds the key
        model: smollm2
        maxConcurrency: 8
        requestsPerMinute: 600
        tokensPerMinute: 200000
        inputPricePerMTok: 0.15
        outputPricePerMTok: 0.60
        timeoutS: 60
        contextWindow: 8192

Keys are :class:`~pydantic.SecretStr`: they never appear in a repr, a log line or a task record.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, overload

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator

from rlm.errors import InvalidInput

__all__ = ["LMSettings", "ProviderSettings", "load_providers", "resolve_provider"]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

#: Concurrent calls one gateway process is given by default (see ``gateway_shards``).
_PER_SHARD = 32


@overload
def _share(total: int, n: int, i: int) -> int: ...
@overload
def _share(total: None, n: int, i: int) -> None: ...
def _share(total: int | None, n: int, i: int) -> int | None:
    """Shard ``i``'s part of ``total`` split ``n`` ways: parts differ by at most one and
    sum to ``total`` exactly."""
    if total is None:
        return None
    return total // n + (1 if i < total % n else 0)


class ProviderSettings(BaseModel):
    """One OpenAI-compatible endpoint and its limits.

    Attributes:
        name: How requests and settings name the provider.
        base_url: The endpoint's ``/v1`` URL.
        api_key: The key (read from ``api_key_env`` when loaded from a file).
        api_key_env: The name of the environment variable holding the key.
        model: The model a request gets when it names none.
        sub_model: The model for sub-calls (RLM mode); ``model`` when unset.
        models: Further models callers may name on this provider (``model`` always may).
        max_concurrency: Requests in flight at once, across every task, replica and node.
        max_inflight_per_tenant: Requests one tenant may have in flight (default: no cap
            beyond ``max_concurrency``; waiting tenants are served round-robin either way).
        requests_per_minute: Requests sent in any 60 s.
        tokens_per_minute: Tokens (prompt estimate + ``max_tokens``) sent in any 60 s.
        input_price_per_mtok: USD per million prompt tokens.
        output_price_per_mtok: USD per million completion tokens.
        timeout_s: One request's timeout.
        max_retries: Retries of a 429/5xx/connection error (honouring ``Retry-After``).
        context_window: Prompt + completion tokens the model takes; larger prompts are refused
            before they are sent.
        default_max_tokens: ``max_tokens`` when a call names none.
        gateway_shards: Gateway processes for this provider, each with an exact share of
            every limit (the shares sum to the limits). Default: one per 32 concurrent
            calls, at most 8 — a gateway spends ~0.35 ms of CPU a call, and a burst of
            answers waits on one process's CPU.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    name: str = Field(default="default", pattern=_NAME)
    base_url: str = Field(validation_alias=AliasChoices("base_url", "baseUrl"))
    api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("api_key", "apiKey")
    )
    api_key_env: str | None = Field(
        default=None, validation_alias=AliasChoices("api_key_env", "apiKeyEnv")
    )
    model: str = Field(min_length=1, max_length=256)
    sub_model: str | None = Field(
        default=None, validation_alias=AliasChoices("sub_model", "subModel")
    )
    models: tuple[str, ...] = ()
    max_concurrency: int = Field(
        default=16,
        ge=1,
        le=4096,
        validation_alias=AliasChoices("max_concurrency", "maxConcurrency"),
    )
    max_inflight_per_tenant: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        validation_alias=AliasChoices("max_inflight_per_tenant", "maxInflightPerTenant"),
    )
    requests_per_minute: int | None = Field(
        default=None,
        ge=1,
        validation_alias=AliasChoices("requests_per_minute", "requestsPerMinute"),
    )
    tokens_per_minute: int | None = Field(
        default=None, ge=1, validation_alias=AliasChoices("tokens_per_minute", "tokensPerMinute")
    )
    input_price_per_mtok: float = Field(
        default=0.0,
        ge=0,
        validation_alias=AliasChoices("input_price_per_mtok", "inputPricePerMTok"),
    )
    output_price_per_mtok: float = Field(
        default=0.0,
        ge=0,
        validation_alias=AliasChoices("output_price_per_mtok", "outputPricePerMTok"),
    )
    timeout_s: float = Field(
        default=120.0, gt=0, le=3600, validation_alias=AliasChoices("timeout_s", "timeoutS")
    )
    max_retries: int = Field(
        default=2, ge=0, le=10, validation_alias=AliasChoices("max_retries", "maxRetries")
    )
    context_window: int | None = Field(
        default=None, ge=16, validation_alias=AliasChoices("context_window", "contextWindow")
    )
    default_max_tokens: int = Field(
        default=1024,
        ge=1,
        le=1_000_000,
        validation_alias=AliasChoices("default_max_tokens", "defaultMaxTokens"),
    )
    gateway_shards: int | None = Field(
        default=None,
        ge=1,
        le=64,
        validation_alias=AliasChoices("gateway_shards", "gatewayShards"),
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("baseUrl must be an http(s) URL")
        return value.rstrip("/")

    def shards(self) -> list[ProviderSettings]:
        """This provider split for its gateway shards: each takes an exact share of every
        limit, and the shares sum to the provider's, so the limits hold over all of them."""
        caps = [self.max_concurrency, self.max_inflight_per_tenant, self.requests_per_minute]
        caps.append(self.tokens_per_minute)
        wanted = self.gateway_shards or min(8, max(1, self.max_concurrency // _PER_SHARD))
        n = max(1, min([wanted, *(c for c in caps if c is not None)]))
        if n == 1:
            return [self]
        return [
            self.model_copy(
                update={
                    "max_concurrency": _share(self.max_concurrency, n, i),
                    "max_inflight_per_tenant": _share(self.max_inflight_per_tenant, n, i),
                    "requests_per_minute": _share(self.requests_per_minute, n, i),
                    "tokens_per_minute": _share(self.tokens_per_minute, n, i),
                    "gateway_shards": 1,
                }
            )
            for i in range(n)
        ]

    def allows_model(self, model: str) -> bool:
        """Whether requests may name ``model`` on this provider."""
        return model in (self.model, self.sub_model, *self.models)

    def with_key_from_env(self, environ: dict[str, str] | None = None) -> ProviderSettings:
        """This provider with ``api_key`` read from ``api_key_env`` (when it names one)."""
        if self.api_key_env is None or self.api_key is not None:
            return self
        env = os.environ if environ is None else environ
        value = env.get(self.api_key_env)
        if value is None:
            return self
        return self.model_copy(update={"api_key": SecretStr(value)})

    def public(self) -> dict[str, Any]:
        """What callers may see of the provider (never its key)."""
        return {
            "name": self.name,
            "model": self.model,
            "subModel": self.sub_model or self.model,
            "models": sorted({self.model, self.sub_model or self.model, *self.models}),
            "maxConcurrency": self.max_concurrency,
            "requestsPerMinute": self.requests_per_minute,
            "tokensPerMinute": self.tokens_per_minute,
            "inputPricePerMTok": self.input_price_per_mtok,
            "outputPricePerMTok": self.output_price_per_mtok,
            "contextWindow": self.context_window,
        }


#: ``LMSettings`` fields that are not the default provider's but the engine's.
_ENGINE_FIELDS = frozenset({"config", "max_inflight_calls", "memo"})


class LMSettings(BaseModel):
    """``RLM_LM__*``: the default provider and the providers file.

    Attributes:
        base_url: The default provider's endpoint (no LM calls when unset and no file).
        api_key: Its key (``OPENAI_API_KEY`` when unset).
        model: Its model.
        sub_model: Its model for sub-calls.
        config: A YAML file of named providers (see the module docstring).
        max_concurrency: The default provider's concurrency.
        max_inflight_per_tenant: Requests one tenant may have in flight at the default
            provider (default: no cap beyond ``max_concurrency``; waiting tenants are served
            round-robin either way).
        requests_per_minute: The default provider's request rate limit.
        tokens_per_minute: The default provider's token rate limit.
        input_price_per_mtok: The default provider's prompt price (USD / 1M tokens).
        output_price_per_mtok: The default provider's completion price.
        timeout_s: The default provider's request timeout.
        context_window: The default provider's context window.
        max_inflight_calls: LM calls the engine keeps in flight at once, over all tasks.
        memo: Whether identical calls at temperature 0 are answered from the memo cache.
    """

    model_config = ConfigDict(frozen=True)

    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str = "gpt-4o-mini"
    sub_model: str | None = None
    config: Path | None = None
    max_concurrency: int = Field(default=16, ge=1, le=4096)
    max_inflight_per_tenant: int | None = Field(default=None, ge=1, le=4096)
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    input_price_per_mtok: float = Field(default=0.0, ge=0)
    output_price_per_mtok: float = Field(default=0.0, ge=0)
    timeout_s: float = Field(default=120.0, gt=0, le=3600)
    context_window: int | None = Field(default=None, ge=16)
    max_inflight_calls: int = Field(default=256, ge=1, le=65_536)
    memo: bool = True

    def providers(self, environ: dict[str, str] | None = None) -> dict[str, ProviderSettings]:
        """Every configured provider by name: the default (``default``) and the file's.

        Raises:
            InvalidInput: the providers file is missing or malformed.
        """
        env = dict(os.environ) if environ is None else environ
        found: dict[str, ProviderSettings] = {}
        if self.base_url is not None:
            key = self.api_key
            if key is None and env.get("OPENAI_API_KEY"):
                key = SecretStr(env["OPENAI_API_KEY"])
            # Every provider field of these settings, under the same name: the default
            # provider is these settings less what belongs to the engine.
            fields = self.model_dump(exclude=set(_ENGINE_FIELDS))
            found["default"] = ProviderSettings(name="default", **{**fields, "api_key": key})
        if self.config is not None:
            for provider in load_providers(self.config, env):
                if provider.name in found:
                    raise InvalidInput(
                        f"LM provider {provider.name!r} is defined twice",
                        field="RLM_LM__CONFIG",
                    )
                found[provider.name] = provider
        return found


def load_providers(path: Path, environ: dict[str, str] | None = None) -> list[ProviderSettings]:
    """Read named providers from a YAML file (``providers: [...]``).

    Args:
        path: The file.
        environ: Where ``apiKeyEnv`` names are looked up (the process environment by default).

    Raises:
        InvalidInput: the file is missing, not YAML, or a provider is malformed (the message
            names the provider and field, never a key).
    """
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise InvalidInput(
            f"cannot read the LM providers file {str(path)!r}: {err.strerror}",
            field="RLM_LM__CONFIG",
        ) from None
    except yaml.YAMLError as err:
        raise InvalidInput(
            f"the LM providers file {str(path)!r} is not YAML: {err}", field="RLM_LM__CONFIG"
        ) from None
    entries = raw.get("providers") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise InvalidInput(
            f"the LM providers file {str(path)!r} needs a 'providers:' list",
            field="RLM_LM__CONFIG",
        )
    providers: list[ProviderSettings] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InvalidInput(f"providers[{i}] is not a mapping", field="RLM_LM__CONFIG")
        if "apiKey" in entry or "api_key" in entry:
            raise InvalidInput(
                f"providers[{i}] holds a key in the file: name its variable with apiKeyEnv",
                field="RLM_LM__CONFIG",
            )
        try:
            provider = ProviderSettings.model_validate(entry)
        except ValueError as err:
            name = entry.get("name", i)
            raise InvalidInput(
                f"LM provider {name!r} in {str(path)!r} is malformed: {err}",
                field="RLM_LM__CONFIG",
            ) from None
        providers.append(provider.with_key_from_env(environ))
    return providers


def resolve_provider(
    providers: dict[str, ProviderSettings], provider: str | None, model: str | None
) -> tuple[ProviderSettings, str]:
    """The provider and model a call goes to (shared by admission and the broker).

    Raises:
        InvalidInput: no provider is configured, or the named provider or model is not.
    """
    if not providers:
        raise InvalidInput(
            "no language-model provider is configured: set RLM_LM__BASE_URL (and "
            "RLM_LM__MODEL, RLM_LM__API_KEY) or RLM_LM__CONFIG",
            {"reason": "no provider"},
        )
    name = provider or ("default" if "default" in providers else next(iter(providers)))
    found = providers.get(name)
    if found is None:
        raise InvalidInput(
            f"LM provider {name!r} is not configured (configured: {', '.join(sorted(providers))})",
            field="input.params.provider",
        )
    chosen = model or found.model
    if not found.allows_model(chosen):
        raise InvalidInput(
            f"model {chosen!r} is not offered by LM provider {name!r} "
            f"(offered: {', '.join(found.public()['models'])})",
            field="input.params.model",
        )
    return found, chosen
