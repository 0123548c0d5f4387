"""CI runs the reproducible ``ci`` profile; a workstation the quicker ``dev`` one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import settings

from tests.hypothesis_profiles import select_profile
from tests.shared_data import REPO_ROOT


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"CI": "true"}, "ci"),
        ({"CI": "1"}, "ci"),
        ({"CI": "True"}, "ci"),
        ({}, "dev"),
        ({"CI": ""}, "dev"),
        ({"CI": "false"}, "dev"),
    ],
)
def test_ci_selects_the_ci_profile(environ: dict[str, str], expected: str) -> None:
    assert select_profile(environ) == expected


def test_the_profiles_differ_where_they_should() -> None:
    ci, dev = settings.get_profile("ci"), settings.get_profile("dev")
    assert (ci.derandomize, ci.database, ci.print_blob) == (True, None, True)
    assert not dev.derandomize
    assert dev.database is not None
    assert ci.max_examples > dev.max_examples
    assert ci.deadline is None
    assert dev.deadline is None


def test_this_run_uses_the_profile_its_environment_selects() -> None:
    expected = settings.get_profile(select_profile(os.environ))
    assert settings.default is not None
    assert (settings.default.derandomize, settings.default.max_examples) == (
        expected.derandomize,
        expected.max_examples,
    )


def test_the_test_configuration_loads_ci_under_ci_true() -> None:
    code = (
        "import tests.conftest\n"
        "from hypothesis import settings\n"
        "print(settings.default.derandomize, settings.default.max_examples)\n"
    )
    env = {**os.environ, "CI": "true"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    ci = settings.get_profile("ci")
    assert out.stdout.split() == [str(ci.derandomize), str(ci.max_examples)]
