"""One ``rlm serve`` and one Chromium for all the console's browser tests (package-wide:
starting them is most of the cost; each test makes its own tenants)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rlm.testing import ChatRequest, FakeLMServer
from tests import rlm_script
from tests.browser.harness import ARTIFACTS, Console, chromium, served_console


def _respond(request: ChatRequest) -> str:
    # RLM turns (and their sub-calls) answer from the scripts of tests/rlm_script.py.
    return rlm_script.responder(request)


@pytest.fixture(scope="package")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A live ``rlm serve`` (fake LM on loopback) and the distribution's Chromium."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_factory.mktemp("console")
    with (
        FakeLMServer(responder=_respond) as lm,
        served_console(tmp, lm.url) as (served, state),
        chromium() as browser,
    ):
        yield Console(served, state, browser)
