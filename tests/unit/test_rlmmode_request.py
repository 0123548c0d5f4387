"""An RLM task's request, validated (no Ray): defaults, refusals naming the field, contexts
read from storage, and the reserved operation name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rlm.errors import InvalidInput
from rlm.models.storage import SourceSpec
from rlm.models.tasks import ExecuteOptions
from rlm.operations import FunctionOperation, OperationRegistry
from rlm.rlmmode.request import check_not_rlm_options, parse_rlm_input, read_context
from rlm.rlmmode.settings import RLMSettings
from rlm.storage.service import StorageService
from rlm.storage.settings import StorageSettings, with_local_default

SETTINGS = RLMSettings(max_iterations=50, max_depth=3, max_context_bytes=4096)


def _parse(raw: dict[str, Any], **options: Any) -> Any:
    return parse_rlm_input(
        {"operation": "rlm", **raw}, ExecuteOptions.model_validate(options), SETTINGS
    )


def test_defaults_are_the_references() -> None:
    parsed = _parse({"query": "how many?", "context": ["a", "b"]})
    params = parsed.params
    assert (params.query, params.max_iterations, params.max_depth) == ("how many?", 30, 1)
    assert (params.model, params.sub_model) == (None, None)
    assert parsed.context == ["a", "b"] and parsed.source is None
    assert parsed.context_bytes == len('["a","b"]')


def test_options_are_taken_within_bounds() -> None:
    parsed = _parse(
        {"query": "q", "context": {"k": "v"}},
        maxIterations=50,
        maxDepth=3,
        model="big",
        subModel="small",
    )
    params = parsed.params
    assert (params.max_iterations, params.max_depth) == (50, 3)
    assert (params.model, params.sub_model) == ("big", "small")


@pytest.mark.parametrize(
    ("raw", "options", "field"),
    [
        ({"context": "x"}, {}, "input.query"),
        ({"query": "", "context": "x"}, {}, "input.query"),
        ({"query": 7, "context": "x"}, {}, "input.query"),
        ({"query": "q" * 100_001, "context": "x"}, {}, "input.query"),
        ({"query": "q"}, {}, "input.context"),
        ({"query": "q", "context": "x", "source": {}}, {}, "input.context"),
        ({"query": "q", "context": None}, {}, "input.context"),
        ({"query": "q", "context": "x" * 5000}, {}, "input.context"),
        ({"query": "q", "context": "x", "params": {}}, {}, "input.params"),
        ({"query": "q", "context": "x"}, {"maxIterations": 51}, "options.maxIterations"),
        ({"query": "q", "context": "x"}, {"maxDepth": 4}, "options.maxDepth"),
        ({"query": "q", "context": "x"}, {"maxDepth": 0}, "options.maxDepth"),
        ({"query": "q", "context": "x"}, {"fanout": 2}, "options.fanout"),
        ({"query": "q", "source": {"connector": "local"}}, {}, "input.source.key"),
        (
            {"query": "q", "source": {"connector": "local", "key": "k", "format": "arrow"}},
            {},
            "input.source.format",
        ),
    ],
)
def test_refusals_name_the_field(raw: dict[str, Any], options: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        _parse(raw, **options)
    assert info.value.details["field"] == field


def test_a_context_with_integers_past_64_bits_is_json() -> None:
    context = {"big": [2**70, -(2**64)], "name": "é"}
    parsed = _parse({"query": "q", "context": context})
    assert parsed.context == context
    assert parsed.context_bytes == len(
        '{"big":[1180591620717411303424,-18446744073709551616],"name":"é"}'.encode()
    )


@pytest.mark.parametrize(
    "context",
    [{"s": {1, 2}}, ["\ud800", 2**70], [object()], [float("nan"), 2**70]],
    ids=["set", "lone-surrogate", "object", "nan"],
)
def test_a_context_that_is_not_json_is_refused_naming_the_field(context: Any) -> None:
    with pytest.raises(InvalidInput, match="not JSON") as info:
        _parse({"query": "q", "context": context})
    assert info.value.details["field"] == "input.context"


def test_rlm_only_options_are_refused_on_other_tasks() -> None:
    check_not_rlm_options(ExecuteOptions(maxDepth=3))  # shared options pass
    for option in ("model", "subModel", "maxIterations"):
        value: Any = 3 if option == "maxIterations" else "m"
        with pytest.raises(InvalidInput) as info:
            check_not_rlm_options(ExecuteOptions.model_validate({option: value}))
        assert info.value.details["field"] == f"options.{option}"


@pytest.fixture
def storage(tmp_path: Path) -> StorageService:
    data = tmp_path / "data"
    data.mkdir()
    (data / "lines.txt").write_text("alpha\nbeta\ngamma\n")
    (data / "text.bin").write_bytes("héllo\xff".encode() + b"\xff")
    np.arange(5, dtype="<i8").tofile(data / "nums.i64")
    return StorageService(with_local_default(StorageSettings(), tmp_path))


@pytest.mark.parametrize(
    ("key", "fmt", "want"),
    [
        ("lines.txt", "lines", ["alpha", "beta", "gamma"]),
        ("text.bin", "bytes", "héllo\xff\ufffd"),
        ("nums.i64", "int64", [0, 1, 2, 3, 4]),
    ],
)
def test_a_context_is_read_whole_from_storage(
    storage: StorageService, key: str, fmt: str, want: Any
) -> None:
    spec = SourceSpec.model_validate({"connector": "local", "key": key, "format": fmt})
    assert read_context(storage, spec, 1024) == want


def test_a_context_file_over_the_limit_is_refused(storage: StorageService) -> None:
    spec = SourceSpec.model_validate({"connector": "local", "key": "lines.txt", "format": "lines"})
    with pytest.raises(InvalidInput, match="at most 8") as info:
        read_context(storage, spec, 8)
    assert info.value.details["field"] == "input.source"


def test_the_rlm_name_is_reserved() -> None:
    registry = OperationRegistry()
    op = FunctionOperation("rlm", leaf=lambda c, p: c, combine=lambda ps, p: ps)
    with pytest.raises(InvalidInput, match="reserved for RLM mode"):
        registry.register(op)
    assert "rlm" not in registry
