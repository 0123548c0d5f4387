"""The actions ``POST /security/validate`` documents are the ones it has rules for."""

from __future__ import annotations

from typing import get_args

from rlm.models.security import RESOURCE_ACTIONS, SecurityAction
from rlm.security.authorization import ACTIONS


def test_the_documented_actions_are_the_rules() -> None:
    assert set(get_args(SecurityAction)) == set(ACTIONS)


def test_the_actions_on_one_resource_are_the_rules_with_a_resource() -> None:
    with_resource = {
        name for name, rule in ACTIONS.items() if rule.resource not in ("none", "own_org")
    }
    assert set(RESOURCE_ACTIONS) == with_resource
