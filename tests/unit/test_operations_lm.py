"""The language-model operations, with models that are plain functions (no server, no Ray).

An oracle model answers ``llm_classify`` prompts from known labels, so the counts must equal
the data's own counts under every tree shape; a line-wise model makes ``llm_map``'s replies
joined equal the mapped lines whatever the chunking.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.errors import InvalidInput, RLMError
from rlm.execution import execute_direct, run_plan_locally
from rlm.inputs import prepare_input
from rlm.lm.calls import LMRequest
from rlm.lm.handle import FunctionLM, current_lm, lm_scope
from rlm.operations import default_registry
from rlm.operations.lm import UNPARSED, classify_prompt, parse_classification
from rlm.planning import plan_task
from rlm.testing.oracle import classify_lines, classify_oracle

REGISTRY = default_registry()
SHAPES = ("recursive", "parallel", "sequential")
LABELS = ["spam", "ham", "eggs"]


def _label(text: str) -> str:
    return LABELS[int(hashlib.sha256(text.encode()).hexdigest(), 16) % len(LABELS)]


def _prompt_of(request: LMRequest) -> str:
    return request.messages[-1]["content"]


def _run(
    name: str, items: list[Any], params: dict[str, Any], shape: str | None, **plan: int
) -> Any:
    prepared = prepare_input({"items": items, "operation": name, "params": params}, REGISTRY)
    if shape is None:
        return execute_direct(prepared)
    return run_plan_locally(plan_task(shape, len(items), **plan), prepared)


lines = st.lists(st.text(alphabet="abc xyz\n", min_size=0, max_size=10), max_size=30)


@settings(max_examples=40, deadline=None)
@given(items=lines, leaf=st.integers(1, 8), fanout=st.integers(2, 5), depth=st.integers(0, 4))
def test_classify_counts_are_the_same_for_every_shape(
    items: list[str], leaf: int, fanout: int, depth: int
) -> None:
    lm = FunctionLM(lambda r: classify_oracle(_label)(_prompt_of(r)))
    params = {"labels": LABELS}
    # The model sees each item on one line (newlines folded to spaces), as the prompt shows it.
    want = Counter(_label(x.replace("\n", " ")) for x in items)
    with lm_scope(lm):
        outputs = [_run("llm_classify", items, params, None)] + [
            _run("llm_classify", items, params, s, leaf_size=leaf, fanout=fanout, max_depth=depth)
            for s in SHAPES
        ]
    for out in outputs:
        assert out == {label: want.get(label, 0) for label in LABELS}
        assert list(out) == LABELS  # every label, in the order given
    assert all(r.temperature == 0.0 for r in lm.requests)


@settings(max_examples=40, deadline=None)
@given(items=lines, leaf=st.integers(1, 8), fanout=st.integers(2, 5))
def test_map_replies_cover_every_item_in_order(items: list[str], leaf: int, fanout: int) -> None:
    # A model that upper-cases the chunk: the replies, joined, are the items upper-cased.
    def upper(request: LMRequest) -> str:
        return _prompt_of(request).removeprefix("Upper: ").upper()

    params = {"prompt": "Upper: {chunk}"}
    want = "\n".join(x.replace("\n", " ") for x in items).upper()
    with lm_scope(FunctionLM(upper)):
        for shape in (None, *SHAPES):
            out = _run("llm_map", items, params, shape, leaf_size=leaf, fanout=fanout, max_depth=4)
            assert "\n".join(out) == want
            if shape == "parallel" and items:
                # one reply per chunk: ceil(n / leaf) chunks
                assert len(out) == -(-len(items) // leaf)


def test_map_sends_the_template_with_the_chunk_and_call_settings() -> None:
    lm = FunctionLM(lambda r: f"#{len(_prompt_of(r))}")
    params = {"prompt": "Q: {chunk}?", "system": "be brief", "maxTokens": 7, "model": "m1"}
    with lm_scope(lm):
        out = _run("llm_map", ["a", "b", "c"], params, "parallel", leaf_size=2)
    assert out == ["#7", "#5"]
    first = lm.requests[0]
    assert first.messages == (
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "Q: a\nb?"},
    )
    assert (first.max_tokens, first.model, first.temperature) == (7, "m1", 0.0)


def test_classify_retries_an_unparsable_reply_once_then_counts_unparsed() -> None:
    replies = iter(["I think these are spam", "1: spam\n2: bogus"])
    lm = FunctionLM(lambda r: next(replies))
    with lm_scope(lm):
        out = _run("llm_classify", ["x", "y"], {"labels": LABELS}, None)
    assert out == {"spam": 1, "ham": 0, "eggs": 0, UNPARSED: 1}
    assert [r.purpose for r in lm.requests] == ["leaf", "retry"]
    assert lm.requests[0].messages != lm.requests[1].messages  # not answered from a memo


def test_classify_parses_strictly() -> None:
    reply = "1: Spam\n2) `ham`.\nitem 3 - EGGS\n4: fish\n2: spam\n9: ham\nnoise"
    assert parse_classification(reply, 4, LABELS) == {1: "spam", 2: "ham", 3: "eggs"}


def test_classify_prompt_round_trips_through_the_oracle() -> None:
    prompt = classify_prompt(["a b", "c\nd"], LABELS, "Label these.")
    assert classify_lines(prompt) == [(1, "a b"), (2, "c d")]
    assert prompt.startswith("Label these.")
    assert "- spam\n- ham\n- eggs" in prompt


def test_summarize_combines_with_the_model_up_the_tree() -> None:
    lm = FunctionLM(lambda r: f"S{len(lm.requests)}")
    with lm_scope(lm):
        out = _run(
            "llm_summarize", [str(i) for i in range(8)], {}, "recursive", leaf_size=2, fanout=2
        )
    # 4 leaves + 2 + 1 combines, each one model call; the root's summary is the output.
    assert [r.purpose for r in lm.requests].count("leaf") == 4
    assert [r.purpose for r in lm.requests].count("combine") == 3
    assert out == "S7"
    with lm_scope(FunctionLM(lambda r: "sum")):
        assert _run("llm_summarize", list("abcd"), {}, "sequential", leaf_size=1) == "sum"


def test_empty_chunks_make_no_calls() -> None:
    lm = FunctionLM(lambda r: "never")
    with lm_scope(lm):
        assert _run("llm_map", [], {"prompt": "{chunk}"}, None) == []
        assert _run("llm_classify", [], {"labels": LABELS}, None) == dict.fromkeys(LABELS, 0)
        assert _run("llm_summarize", [], {}, None) == ""
    assert lm.requests == []


def test_a_label_given_twice_is_one_label() -> None:
    prepared = prepare_input(
        {
            "items": ["a"],
            "operation": "llm_classify",
            "params": {"labels": ["Spam", " spam", "ham"]},
        },
        REGISTRY,
    )
    assert prepared.params.labels == ("Spam", "ham")


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("llm_map", {}, "input.params.prompt"),
        ("llm_map", {"prompt": "no placeholder"}, "input.params.prompt"),
        ("llm_map", {"prompt": "{chunk}", "maxTokens": 0}, "input.params.maxTokens"),
        ("llm_map", {"prompt": "{chunk}", "temperature": 3}, "input.params.temperature"),
        ("llm_classify", {}, "input.params.labels"),
        ("llm_classify", {"labels": []}, "input.params.labels"),
        ("llm_classify", {"labels": ["a", "  "]}, "input.params.labels"),
        ("llm_classify", {"labels": ["a", "unparsed"]}, "input.params.labels"),
        ("llm_classify", {"labels": ["a"], "instruction": 5}, "input.params.instruction"),
        ("llm_summarize", {"model": 1}, "input.params.model"),
    ],
)
def test_bad_params_name_the_field(name: str, params: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        prepare_input({"items": ["a"], "operation": name, "params": params}, REGISTRY)
    assert info.value.details["field"] == field


def test_an_lm_operation_outside_the_engine_says_no_model_is_bound() -> None:
    with pytest.raises(RLMError, match="language model"):
        current_lm()
    with pytest.raises(RLMError, match="language model"):
        _run("llm_map", ["a"], {"prompt": "{chunk}"}, None)


def test_storage_chunks_are_shown_item_by_item() -> None:
    # What a leaf over a storage source gets: an Arrow table (rows), bytes (lines), a numpy
    # array (numbers). Each is shown one item per line, as inline items are.
    import numpy as np
    import pyarrow as pa

    lm = FunctionLM(lambda r: _prompt_of(r))
    op = REGISTRY.get("llm_map")
    params = op.parse_params({"prompt": "<{chunk}>"})
    table = pa.table({"id": [1, 2], "text": ["spam here", "ham\nthere"]})
    with lm_scope(lm):
        assert op.leaf(table, params) == [
            '<{"id":1,"text":"spam here"}\n{"id":2,"text":"ham\\nthere"}>'  # JSON escapes it
        ]
        assert op.leaf(b"one\r\ntwo \xff\n", params) == ["<one\ntwo \ufffd>"]
        assert op.leaf(np.array([3, 4], dtype=np.int64), params) == ["<3\n4>"]
    classify = REGISTRY.get("llm_classify")
    oracle = FunctionLM(lambda r: classify_oracle(_label)(_prompt_of(r)))
    with lm_scope(oracle):
        counts = classify.leaf(table, classify.parse_params({"labels": LABELS}))
    assert sum(counts.values()) == 2 and set(counts) <= set(LABELS)


def test_an_arrow_binary_column_is_shown_as_its_text() -> None:
    # JSON has no bytes: a binary value is shown as the UTF-8 text it holds (bad bytes
    # replaced), nested ones too, as the source scan reads them (rlm.security.arrow_scan).
    import pyarrow as pa

    lm = FunctionLM(lambda r: _prompt_of(r))
    op = REGISTRY.get("llm_map")
    params = op.parse_params({"prompt": "<{chunk}>"})
    table = pa.table(
        {
            "raw": pa.array([b"caf\xc3\xa9", b"\xff!"], pa.binary()),
            "parts": pa.array([[b"a"], []], pa.list_(pa.large_binary())),
        }
    )
    with lm_scope(lm):
        assert op.leaf(table, params) == [
            '<{"raw":"caf\u00e9","parts":["a"]}\n{"raw":"\ufffd!","parts":[]}>'
        ]
