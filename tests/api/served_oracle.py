"""One ``rlm serve`` process for the tests that drive the service as its users do: the bare SDK
install and the notebooks. Its language model is the loopback OpenAI-compatible server of
``rlm.testing`` answering as the OOLONG oracle (this machine reaches no paid LM API)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rlm.eval.data import default_data_path, label_map, load_instances
from rlm.testing import FakeLMServer
from rlm.testing.oolong_oracle import oolong_responder
from tests.api.serve_process import Served, free_port, rlm_serve
from tests.support import state_dir_token

__all__ = ["OracleServe", "oracle_serve"]


@dataclass
class OracleServe:
    """A running ``rlm serve``: its API base URL, the environment it was started with (a
    temporary ``HOME`` and state directory), and a token minter using its own signing key."""

    served: Served
    env: dict[str, str]
    state_dir: Path
    #: The service's language model: what it was asked is in ``lm.requests``.
    lm: FakeLMServer

    @property
    def base_url(self) -> str:
        """E.g. ``http://127.0.0.1:PORT/v1``."""
        return self.served.base

    def token(
        self,
        sub: str | None = None,
        scopes: str = "rlm:execute rlm:read",
        tier: str = "user",
        **claims: object,
    ) -> str:
        """A token the server accepts (the key ``rlm token`` would sign with)."""
        return state_dir_token(self.state_dir, sub, scopes, tier, **claims)


@contextmanager
def oracle_serve(tmp: Path) -> Iterator[OracleServe]:
    """Start the oracle LM and ``rlm serve`` (two agents) under ``tmp``; stop both after."""
    home, state = tmp / "home", tmp / "state"
    home.mkdir()
    labels = label_map(load_instances(default_data_path()))
    with FakeLMServer(responder=oolong_responder(labels)) as lm:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RLM_", "RAY_"))}
        env |= {
            "HOME": str(home),
            "RLM_STATE_DIR": str(state),
            "RLM_ENGINE__AGENTS": "2",
            "RLM_LM__BASE_URL": lm.url,
            "RLM_LM__API_KEY": "test-key",
            "RLM_LM__MODEL": "fake-model",
            # A second model the provider offers (a notebook may name it, OOLONG_MODEL).
            "RLM_LM__SUB_MODEL": "fake-sub-model",
            # Prices, so the notebooks' cost charts show something: the API document's units.
            "RLM_LM__INPUT_PRICE_PER_MTOK": "1.0",
            "RLM_LM__OUTPUT_PRICE_PER_MTOK": "2.0",
        }
        with rlm_serve(env, free_port()) as served:
            yield OracleServe(served, env, state, lm)
