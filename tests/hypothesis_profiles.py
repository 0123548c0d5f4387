"""Hypothesis profiles: ``dev`` on a workstation, ``ci`` when the CI sets ``CI=true``.

``dev`` keeps the example database (a failure found once is replayed first next time) and runs
fewer examples, for a quick loop. ``ci`` is reproducible: derandomized (the same examples on
every run, so a red build is not a fluke of the seed), no database, more examples, and
``print_blob`` so a failure prints the ``@reproduce_failure`` line to replay it locally. Neither
has a deadline: on shared 2-core machines a timing limit would fail for the machine's load, not
for the code. Tests that pin ``max_examples`` (costly properties) keep their own budget; the
profile sets everything else for them. ``pytest --hypothesis-profile=NAME`` overrides the choice.
"""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import HealthCheck, settings

__all__ = ["CI_VALUES", "register_profiles", "select_profile"]

CI_VALUES = frozenset({"1", "true", "yes"})


def register_profiles() -> None:
    """Register the ``dev`` and ``ci`` profiles."""
    # Both start from Hypothesis's own defaults, not from the loaded profile: under CI=true
    # Hypothesis has already loaded its built-in "ci" profile, which dev must not inherit.
    base = settings.get_profile("default")
    settings.register_profile(
        "dev",
        parent=base,
        max_examples=50,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile(
        "ci",
        parent=base,
        max_examples=200,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )


def select_profile(environ: Mapping[str, str]) -> str:
    """``"ci"`` when ``CI`` is set to a true value (``CI=true`` on every CI we know), else dev."""
    return "ci" if environ.get("CI", "").strip().lower() in CI_VALUES else "dev"
