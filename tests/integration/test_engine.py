"""The execution engine on a real local Ray: shapes, counts, errors, progress."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import rlm
from rlm.errors import InternalError, InvalidInput
from tests.support import wait_until

pytestmark = pytest.mark.integration

DOC_EXAMPLE = {
    "type": "recursive",
    "description": "Sum large dataset",
    "input": {"items": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "operation": "sum"},
    "options": {"timeoutMs": 30000, "priority": "normal"},
}


def test_document_example_sums_to_55(hv: rlm.Hypervisor) -> None:
    result = hv.execute(DOC_EXAMPLE)
    assert result.status == "completed"
    assert result.output == 55
    assert result.success is True
    assert result.agent_calls == 1 and result.decomposition_depth == 0
    assert hv.status(result.task_id).status == "completed"


def test_sixteen_items_make_a_full_binary_tree(hv: rlm.Hypervisor) -> None:
    result = hv.execute(
        {
            "type": "recursive",
            "description": "tree",
            "input": {"items": list(range(16)), "operation": "sum"},
            "options": {"leafSize": 1, "fanout": 2},
        }
    )
    assert (result.output, result.agent_calls, result.decomposition_depth) == (120, 31, 4)


@pytest.mark.parametrize(
    ("type_", "calls", "depth"), [("parallel", 5, 1), ("sequential", 4, 1), ("recursive", 5, 1)]
)
def test_shapes_agree_and_count(hv: rlm.Hypervisor, type_: str, calls: int, depth: int) -> None:
    result = hv.execute(
        {
            "type": type_,
            "description": type_,
            "input": {"items": list(range(1, 17)), "operation": "sum"},
            "options": {"leafSize": 4},
        }
    )
    assert (result.output, result.agent_calls, result.decomposition_depth) == (136, calls, depth)


def test_max_depth_is_respected(hv: rlm.Hypervisor) -> None:
    result = hv.execute(
        {
            "type": "recursive",
            "description": "shallow",
            "input": {"items": list(range(1000)), "operation": "sum"},
            "options": {"leafSize": 1, "fanout": 2, "maxDepth": 3},
        }
    )
    assert result.output == sum(range(1000))
    assert result.decomposition_depth == 3
    assert result.agent_calls == 8 + 7


def test_large_numpy_and_arrow_inputs(hv: rlm.Hypervisor) -> None:
    rng = np.random.default_rng(7)
    arr = rng.integers(-1000, 1000, size=1_000_000)
    for items in (arr, pa.array(arr)):
        result = hv.execute(
            {
                "type": "recursive",
                "description": "big",
                "input": {"items": items, "operation": "sum"},
                "options": {"leafSize": 50_000},
            }
        )
        assert result.output == int(arr.sum())
        # Fanout 4 over 1e6 items, leaves of at most 50k: 4 x 4 x 2 = 32 leaves, 21 combines.
        assert (result.agent_calls, result.decomposition_depth) == (53, 3)
    stored = hv.status(result.task_id)
    assert stored.status == "completed"


def test_expected_output_is_scored(hv: rlm.Hypervisor) -> None:
    right = hv.execute({**DOC_EXAMPLE, "expectedOutput": 55})
    wrong = hv.execute({**DOC_EXAMPLE, "expectedOutput": 57})
    assert (right.score, right.success) == (1.0, True)
    assert wrong.score == pytest.approx(0.75**2)
    assert wrong.success is False and wrong.status == "completed"


def test_bad_input_is_refused_before_anything_runs(hv: rlm.Hypervisor) -> None:
    with pytest.raises(InvalidInput) as info:
        hv.execute(
            {
                "type": "recursive",
                "description": "strings",
                "input": {"items": ["a", "b"], "operation": "sum"},
            }
        )
    assert info.value.details["field"] == "input.items[0]"


def test_an_operation_error_is_invalid_input(hv: rlm.Hypervisor) -> None:
    result = hv.execute(
        {
            "type": "parallel",
            "description": "boom",
            "input": {"items": list(range(10)), "operation": "explode"},
            "options": {"leafSize": 2},
        }
    )
    assert result.status == "failed" and result.success is False
    assert result.error is not None and result.error.code == "INVALID_INPUT"
    # A user's operation: its exception text stays in the log, under the incident id shown.
    incident = result.error.details["incident"]
    assert result.error.details == {"operation": "explode", "incident": incident}
    assert result.error.message == f"operation 'explode' failed on this input (incident {incident})"
    assert "always fails" not in result.model_dump_json()


def test_registered_python_functions(hv: rlm.Hypervisor) -> None:
    hv.register_operation(
        "sum_of_squares",
        leaf=lambda chunk, p: int((chunk**2).sum()),
        combine=lambda parts, p: sum(parts),
        input_kind="numbers",
        replace=True,
    )
    result = hv.execute(
        {
            "type": "recursive",
            "description": "squares",
            "input": {"items": list(range(100)), "operation": "sum_of_squares"},
            "options": {"leafSize": 7, "fanout": 3},
        }
    )
    assert result.output == sum(i * i for i in range(100))


def test_progress_is_visible_while_running(hv: rlm.Hypervisor) -> None:
    task_id = hv.submit(
        {
            "type": "parallel",
            "description": "slow",
            "input": {"items": list(range(8)), "operation": "slow_sum", "params": {"seconds": 0.3}},
            "options": {"leafSize": 1},
        }
    )
    seen = set()

    def completed() -> bool:
        status = hv.status(task_id)
        assert status.progress is not None and status.progress.total == 9
        seen.add(status.progress.current)
        return status.status == "completed"

    wait_until(completed, 30, f"{task_id} completes")
    assert any(0 < c < 9 for c in seen), seen
    assert hv.result(task_id).output == sum(range(8))


def test_a_database_url_that_is_not_postgresql_is_refused(tmp_path: object) -> None:
    from pathlib import Path

    from rlm.config import Settings

    with pytest.raises(InvalidInput) as info:
        Settings(state_dir=Path(str(tmp_path)), database_url="sqlite:///elsewhere.db")
    assert info.value.details["field"] == "database_url"


def test_an_unreachable_database_is_refused_before_anything_starts(tmp_path: object) -> None:
    from pathlib import Path

    from rlm.config import Settings

    url = "postgresql://rlm:s3cret@127.0.0.1:1/rlm"
    with pytest.raises(InternalError) as info:
        rlm.connect(settings=Settings(state_dir=Path(str(tmp_path)), database_url=url))
    assert "s3cret" not in str(info.value) and "127.0.0.1:1" in str(info.value)
