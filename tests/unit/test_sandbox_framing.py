"""The host <-> sandbox wire (:mod:`rlm.sandbox.framing`, no Ray, no process): frames round trip
in any pieces, and whatever bytes an untrusted child writes end as a message it may send or a
:class:`FrameError` — never another exception, never a message of the wrong shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm.sandbox.framing import CHILD_MESSAGES, FrameDecoder, FrameError, encode

texts = st.text(max_size=50)
_VALUES = {
    "str": texts,
    "str|None": st.none() | texts,
    "bool": st.booleans(),
    "list[str]": st.lists(texts, max_size=4),
}


@st.composite
def child_messages(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(sorted(CHILD_MESSAGES)))
    fields = {name: draw(_VALUES[kind]) for name, kind in CHILD_MESSAGES[op].items()}
    return {"op": op, **fields}


@given(messages=st.lists(child_messages(), min_size=1, max_size=4), piece=st.integers(1, 64))
def test_what_the_child_sends_round_trips_in_any_pieces(
    messages: list[dict[str, Any]], piece: int
) -> None:
    data = b"".join(encode(m) for m in messages)
    decoder = FrameDecoder(1 << 20)
    decoded = [m for i in range(0, len(data), piece) for m in decoder.feed(data[i : i + piece])]
    assert decoded == messages


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


_CALL = {"op": "call", "kind": "llm_query", "prompts": ["p"], "model": None}


@pytest.mark.parametrize(
    "data",
    [
        pytest.param((2 << 20).to_bytes(4, "big"), id="longer than the limit, before buffering"),
        pytest.param(_frame(b"[]"), id="not an object"),
        pytest.param(_frame(b'{"op":1'), id="broken JSON"),
        pytest.param(_frame(b"\xff"), id="not UTF-8"),
        pytest.param(_frame(b'{"op":"ok","op":"ok"}'), id="duplicate key"),
        pytest.param(_frame(b'{"op":"ready","confined":true,"error":NaN}'), id="NaN"),
        pytest.param(_frame(b'{"op":"run","code":"x","cpu_s":1}'), id="a host op"),
        pytest.param(_frame(b'{"op":"bogus"}'), id="unknown op"),
        pytest.param(_frame(json.dumps({**_CALL, "depth": 0}).encode()), id="unknown field"),
        pytest.param(_frame(b'{"op":"call","kind":"llm_query","prompts":["p"]}'), id="missing"),
        pytest.param(_frame(json.dumps({**_CALL, "prompts": [1]}).encode()), id="wrong type"),
        pytest.param(_frame(b'{"op":"ready","confined":1,"error":null}'), id="int for bool"),
        pytest.param(_frame(b"[" * 100_000), id="nested too deep"),
    ],
)
def test_bad_frames_are_refused(data: bytes) -> None:
    with pytest.raises(FrameError):
        FrameDecoder(1 << 20).feed(data)


@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_are_messages_or_frame_errors(data: bytes) -> None:
    try:
        messages = FrameDecoder(1024).feed(data)
    except FrameError:
        return
    assert all(m["op"] in CHILD_MESSAGES for m in messages)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
field_names = st.sampled_from(
    sorted({name for fields in CHILD_MESSAGES.values() for name in fields} | {"depth", "x"})
)


@given(
    obj=st.dictionaries(field_names, json_values | st.lists(st.text(max_size=5)), max_size=7),
    op=st.sampled_from([*sorted(CHILD_MESSAGES), "run", "bogus"]),
)
def test_arbitrary_objects_are_exact_child_messages_or_frame_errors(
    obj: dict[str, Any], op: str
) -> None:
    try:
        (message,) = FrameDecoder(1 << 20).feed(encode({"op": op, **obj}))
    except FrameError:
        return
    fields = CHILD_MESSAGES[message["op"]]
    assert message.keys() == {"op", *fields}
