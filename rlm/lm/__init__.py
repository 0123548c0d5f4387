"""Language models: providers, calls, budgets, the memo cache and provider limits (pure).

- :mod:`rlm.lm.settings`: providers (``RLM_LM__*`` and a YAML file), resolving one for a call;
- :mod:`rlm.lm.calls`: a request, a reply, a task's usage, token estimates, prices, memo keys;
- :mod:`rlm.lm.budget`: a task's budget, reserved before each call;
- :mod:`rlm.lm.memo`: memoised temperature-0 replies in the state file;
- :mod:`rlm.lm.limits`: fair concurrency slots and the per-minute pacer of a gateway;
- :mod:`rlm.lm.handle`: the ``lm`` handle an operation calls;
- :mod:`rlm.lm.steps`: an LM call's work as steps, run by a blocking or an async driver.

The Ray side (gateway actors, the core's broker) is in :mod:`rlm.runtime`.
"""

from __future__ import annotations

# No re-exports: the settings and wire models import these modules while ``rlm.config`` and
# ``rlm.models`` load, so the package itself stays empty (import from the modules).
__all__: list[str] = []
