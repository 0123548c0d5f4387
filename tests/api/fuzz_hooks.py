"""schemathesis hooks for the fuzzing of the live service (``SCHEMATHESIS_HOOKS``).

* Values for the string formats the API document names but JSON Schema cannot describe: an
  expression is drawn from ones that evaluate on any JSON value (one that fails on some items
  is refused at run time, for those items: no schema can say which); a regular expression from
  ones ``grep``'s engine compiles; a webhook URL from ones that resolve to an address the
  test service lets webhooks call (loopback: ``RLM_WEBHOOKS__ALLOW_LOOPBACK`` is on there) and
  that refuse connections at once (port 9, discard), so deliveries fail fast.
* The bearer token: taken in turn from ``RLM_FUZZ_TOKENS`` (users of one org, each with its
  own rate limits; policy changes from ``RLM_FUZZ_POLICY_TOKENS``, another org's admins), so
  the fuzzer's thousands of requests a minute are not answered 429 before they reach the
  handlers. As an auth provider, schemathesis still removes or spoils it to
  check that every route refuses requests without a valid token (``ignored_auth``).
"""

from __future__ import annotations

import itertools
import os
import re
from typing import Any

import schemathesis
from hypothesis import strategies as st

EXPRESSIONS = ["true", "false", "x == 1", "x != null", 'not (x == "a")', "x == x", "x"]
PAIR_EXPRESSIONS = ["true", "false", "a == b", "a != b", "not (a == b)"]
PATTERNS = ["a", "^E", "x|y", "[0-9]+", "err(or)?", ".", "ERROR"]
WEBHOOK_URLS = [
    "https://127.0.0.1:9/hook",
    "http://127.0.0.1:9/events?x=1",
    "https://localhost:9/",
    "HTTPS://[::1]:9/a/b",
]

schemathesis.openapi.format("rlm-expression", st.sampled_from(EXPRESSIONS))
schemathesis.openapi.format("rlm-pair-expression", st.sampled_from(PAIR_EXPRESSIONS))
schemathesis.openapi.format("rlm-regex", st.sampled_from(PATTERNS))
schemathesis.openapi.format("rlm-webhook-url", st.sampled_from(WEBHOOK_URLS))

#: ``url`` of a webhook as the document describes it (the accepted schemes, then a host).
_URL_FORM = re.compile(r"(?i:https?)://[^/?#@\s]+")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """A webhook's ``url`` of the documented form, but naming a host the generator made up
    (``HTTPS://0``), becomes one of :data:`WEBHOOK_URLS` before it is sent: whether a name
    resolves, and to an address webhooks may call, is the DNS's answer, which no schema can
    give (the service checks it at registration and at every delivery;
    ``tests/api/test_webhooks_api.py`` covers the refusals). A ``url`` not of the documented
    form is sent as generated. Every phase calls this hook (the coverage phase applies no
    strategy hooks)."""
    if not case.operation.path.startswith("/v1/webhooks"):
        return
    for body in (case.body, kwargs.get("json")):
        if not isinstance(body, dict):
            continue
        url = body.get("url")
        if isinstance(url, str) and _URL_FORM.match(url) and url not in WEBHOOK_URLS:
            body["url"] = WEBHOOK_URLS[len(url) % len(WEBHOOK_URLS)]


_TOKENS = itertools.cycle(os.environ.get("RLM_FUZZ_TOKENS", "").split(",") or [""])
#: Admins of another org, for the routes that change the org's security policies: the fuzzer
#: sets them to anything the document allows (``maxValues: 1`` refuses every task's input),
#: which must not decide what the other routes, run by ``fuzz-org``, answer.
_POLICY_TOKENS = itertools.cycle(os.environ.get("RLM_FUZZ_POLICY_TOKENS", "").split(",") or [""])


@schemathesis.auth(refresh_interval=None)
class TokenPool:
    """A valid token for every case, from the pool in turn."""

    def get(self, case: Any, context: Any) -> str:
        if case.operation.path.startswith("/v1/security/policies/"):
            return next(_POLICY_TOKENS)
        return next(_TOKENS)

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
