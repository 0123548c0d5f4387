"""The public surface, and the rule that the pure core does not import Ray."""

from __future__ import annotations

import subprocess
import sys

import rlm
import rlm.testing

PURE_MODULES = [
    "rlm",
    "rlm.config",
    "rlm.errors",
    "rlm.models",
    "rlm.operations",
    "rlm.planning",
    "rlm.rlmmode",
    "rlm.inputs",
    "rlm.execution",
    "rlm.gate",
    "rlm.scoring",
    "rlm.scheduling",
    "rlm.tasks",
    "rlm.cli",
    "rlm.eval",
    "rlm.eval.oolong",
    "rlm.testing",
    "rlm.testing.openai_server",
    "rlm.testing.oolong_oracle",
    "rlm.testing.webhook_receiver",
    "rlm.webhooks",
    "rlm.webhooks.service",
    "rlm.webhooks.sender",
]


def test_exports_are_exactly_what_we_mean() -> None:
    assert rlm.__all__ == sorted(rlm.__all__)
    assert set(rlm.__all__) == {
        "CancelResponse",
        "ExecuteRequest",
        "ExecuteResponse",
        "Forbidden",
        "FunctionOperation",
        "Hypervisor",
        "InternalError",
        "InvalidInput",
        "Operation",
        "OperationRegistry",
        "QuotaExceeded",
        "RLMError",
        "RateLimited",
        "Settings",
        "TaskNotFound",
        "TaskStatus",
        "TaskTimeout",
        "Unauthorized",
        "__version__",
        "check_cancelled",
        "connect",
        "get_settings",
    }


def test_testing_exports_are_exactly_what_we_mean() -> None:
    assert rlm.testing.__all__ == sorted(rlm.testing.__all__)
    assert set(rlm.testing.__all__) == {
        "DEFAULT_MODELS",
        "TENANT_HEADER",
        "ChatRequest",
        "FakeLMServer",
        "ReceivedWebhook",
        "Responder",
        "ServerStats",
        "TenantStats",
        "WebhookReceiver",
        "by_prompt",
        "count_prompt_tokens",
        "count_tokens",
        "echo",
        "scripted",
        "truncate_to_tokens",
    }
    for name in rlm.testing.__all__:
        assert getattr(rlm.testing, name) is not None


def test_eval_exports_are_exactly_what_we_mean() -> None:
    import rlm.eval

    assert rlm.eval.__all__ == sorted(rlm.eval.__all__)
    assert set(rlm.eval.__all__) == {
        "EvalEngine",
        "EvalPlan",
        "EvalReport",
        "Instance",
        "KINDS",
        "MODES",
        "ModeConfig",
        "ModeRun",
        "ModeSummary",
        "Question",
        "QuestionResult",
        "QuestionSpec",
        "Window",
        "build_window",
        "default_data_path",
        "load_instances",
        "parse_question",
        "plan_oolong",
        "run_oolong",
        "run_plan",
        "score_reply",
    }
    for name in rlm.eval.__all__:
        assert getattr(rlm.eval, name) is not None


def test_pure_modules_do_not_import_ray() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in PURE_MODULES)
        + "bad = [m for m in sys.modules if m == 'ray' or m.startswith('ray.')]\n"
        + "assert not bad, bad[:5]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
