"""schemathesis hooks for the fuzzing of the live service (``SCHEMATHESIS_HOOKS``).

* Values for the string formats the API document names but JSON Schema cannot describe: an
  expression is drawn from ones that evaluate on any JSON value (one that fails on some items
  is refused at run time, for those items: no schema can say which); a regular expression from
  ones ``grep``'s engine compiles.
* The bearer token: taken in turn from ``RLM_FUZZ_TOKENS`` (users of one org, each with its
  own rate limits), so the fuzzer's thousands of requests a minute are not answered 429 before
  they reach the handlers. As an auth provider, schemathesis still removes or spoils it to
  check that every route refuses requests without a valid token (``ignored_auth``).
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import schemathesis
from hypothesis import strategies as st

EXPRESSIONS = ["true", "false", "x == 1", "x != null", 'not (x == "a")', "x == x", "x"]
PAIR_EXPRESSIONS = ["true", "false", "a == b", "a != b", "not (a == b)"]
PATTERNS = ["a", "^E", "x|y", "[0-9]+", "err(or)?", ".", "ERROR"]

schemathesis.openapi.format("rlm-expression", st.sampled_from(EXPRESSIONS))
schemathesis.openapi.format("rlm-pair-expression", st.sampled_from(PAIR_EXPRESSIONS))
schemathesis.openapi.format("rlm-regex", st.sampled_from(PATTERNS))

_TOKENS = itertools.cycle(os.environ.get("RLM_FUZZ_TOKENS", "").split(",") or [""])


@schemathesis.auth(refresh_interval=None)
class TokenPool:
    """A valid token for every case, from the pool in turn."""

    def get(self, case: Any, context: Any) -> str:
        return next(_TOKENS)

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
