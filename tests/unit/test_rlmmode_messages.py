"""The host <-> sandbox wire: round trips, and strict refusal of anything else."""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm.errors import InternalError, ProtocolError
from rlm.rlmmode.messages import (
    BATCHED_KINDS,
    CALL_KINDS,
    MAX_MESSAGE_BYTES,
    Call,
    Done,
    Exec,
    Message,
    Result,
    Shutdown,
    decode_from_host,
    decode_from_sandbox,
    encode_message,
    read_line,
)

ids = st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True)
texts = st.text(max_size=200)
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)


@st.composite
def calls(draw: st.DrawFn) -> Call:
    kind = draw(st.sampled_from(sorted(CALL_KINDS)))
    size = st.integers(0, 5) if kind in BATCHED_KINDS else st.just(1)
    n = draw(size)
    prompts = tuple(draw(st.lists(texts, min_size=n, max_size=n)))
    return Call(id=draw(ids), kind=kind, prompts=prompts, model=draw(st.none() | texts))  # type: ignore[arg-type]


host_messages = st.one_of(
    st.builds(Exec, id=ids, code=texts),
    st.builds(Result, id=ids, value=texts | st.lists(texts, max_size=5).map(tuple)),
    st.just(Shutdown()),
)
sandbox_messages = st.one_of(
    calls(),
    st.builds(
        Done,
        id=ids,
        stdout=texts,
        stderr=texts,
        new_vars=st.lists(identifiers, max_size=5).map(tuple),
        answer=st.none() | texts,
        error=st.none() | texts,
        duration_ms=st.floats(min_value=0, max_value=1e9) | st.integers(0, 10**9),
    ),
)


@given(message=host_messages)
def test_host_messages_round_trip(message: Message) -> None:
    line = encode_message(message)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert decode_from_host(line) == message
    assert decode_from_host(line.decode("utf-8")) == message


@given(message=sandbox_messages)
def test_sandbox_messages_round_trip(message: Message) -> None:
    line = encode_message(message)
    assert line.count(b"\n") == 1
    assert decode_from_sandbox(line) == message


def _decode_or_reason(decode: Callable[[bytes], Message], line: bytes) -> Message | str:
    """The decoded message, or the ProtocolError's reason; any other exception escapes."""
    try:
        return decode(line)
    except ProtocolError as exc:
        return exc.reason


@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_decoders(data: bytes) -> None:
    for decode in (decode_from_host, decode_from_sandbox):
        outcome = _decode_or_reason(decode, data)
        if isinstance(outcome, str):
            assert outcome in {"malformed", "invalid"}
        else:  # bytes that happen to be a valid message: it is one
            assert decode(encode_message(outcome)) == outcome


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    ["type", "id", "code", "value", "kind", "prompts", "model", "stdout", "stderr", "newVars",
     "answer", "error", "durationMs", "extra"]
)  # fmt: skip


@given(
    obj=st.dictionaries(field_names, json_values, max_size=8),
    type_=st.sampled_from(["exec", "result", "shutdown", "call", "done", "bogus"]),
)
def test_arbitrary_json_objects_decode_to_a_valid_message_or_a_protocol_error(
    obj: dict[str, object], type_: str
) -> None:
    obj["type"] = type_
    line = json.dumps(obj).encode()
    for decode in (decode_from_host, decode_from_sandbox):
        message = _decode_or_reason(decode, line)
        if isinstance(message, str):
            assert message == "invalid"
        else:
            # What decodes is a real message: it round-trips, and it holds what was sent.
            line_again = encode_message(message)
            assert decode(line_again) == message
            encoded = json.loads(line_again)
            assert {k: v for k, v in obj.items() if v is not None} == {
                k: v for k, v in encoded.items() if v is not None
            }


def test_wire_names_are_camel_case_and_optional_fields_are_left_out() -> None:
    done = Done(id="c1", stdout="3\n", stderr="", new_vars=("n",), duration_ms=1.5)
    assert json.loads(encode_message(done)) == {
        "type": "done",
        "id": "c1",
        "stdout": "3\n",
        "stderr": "",
        "newVars": ["n"],
        "durationMs": 1.5,
    }
    assert json.loads(encode_message(Shutdown())) == {"type": "shutdown"}


def test_null_optional_fields_are_accepted() -> None:
    line = (
        b'{"type":"done","id":"c1","stdout":"","stderr":"","newVars":[],'
        b'"answer":null,"error":null,"durationMs":0}'
    )
    assert decode_from_sandbox(line) == Done(id="c1", stdout="", stderr="", new_vars=())


REFUSED = [
    pytest.param(b"", "malformed", id="empty line"),
    pytest.param(b"{not json", "malformed", id="broken JSON"),
    pytest.param(b"\xff\xfe{}", "malformed", id="not UTF-8"),
    pytest.param(
        b"[" * 100_000 + b"]" * 100_000, "malformed", id="nested past the recursion limit"
    ),
    pytest.param(b'{"type":"done"}\n{"type":"done"}', "malformed", id="two messages on a line"),
    pytest.param(b"[]", "invalid", id="not an object"),
    pytest.param(b'{"id":"q1"}', "invalid", id="no type"),
    pytest.param(
        b'{"type":"exec","id":"c1","code":"x"}', "invalid", id="host message from sandbox"
    ),
    pytest.param(b'{"type":"eval","code":"x"}', "invalid", id="unknown type"),
    pytest.param(
        b'{"type":"call","id":"q1","kind":"llm_query","prompts":["a"],"evil":1}',
        "invalid",
        id="unknown field",
    ),
    pytest.param(b'{"type":"call","id":"q1","kind":"llm_query"}', "invalid", id="missing field"),
    pytest.param(
        b'{"type":"call","id":"q1","kind":"os.system","prompts":["a"]}', "invalid", id="bad kind"
    ),
    pytest.param(
        b'{"type":"call","id":"q1","kind":["llm_query"],"prompts":["a"]}',
        "invalid",
        id="kind not a string",
    ),
    pytest.param(
        b'{"type":"call","id":"q1","kind":"llm_query","prompts":["a","b"]}',
        "invalid",
        id="two prompts to llm_query",
    ),
    pytest.param(
        b'{"type":"call","id":"q1","kind":"llm_query_batched","prompts":"a"}',
        "invalid",
        id="batched prompts not a list",
    ),
    pytest.param(
        b'{"type":"call","id":"q1","kind":"llm_query","prompts":[1]}',
        "invalid",
        id="prompt not a string",
    ),
    pytest.param(
        b'{"type":"call","id":"../x y","kind":"llm_query","prompts":["a"]}', "invalid", id="bad id"
    ),
    pytest.param(
        b'{"type":"call","id":"q1","kind":"llm_query","prompts":["\\ud800"]}',
        "invalid",
        id="lone surrogate",
    ),
    pytest.param(
        b'{"type":"call","id":"q1","id":"q2","kind":"llm_query","prompts":["a"]}',
        "invalid",
        id="duplicate key",
    ),
    pytest.param(
        b'{"type":"done","id":"c1","stdout":"","stderr":"","newVars":["a b"],"durationMs":1}',
        "invalid",
        id="new var not an identifier",
    ),
    pytest.param(
        b'{"type":"done","id":"c1","stdout":"","stderr":"","newVars":[],"durationMs":NaN}',
        "invalid",
        id="NaN duration",
    ),
    pytest.param(
        b'{"type":"done","id":"c1","stdout":"","stderr":"","newVars":[],"durationMs":-1}',
        "invalid",
        id="negative duration",
    ),
    pytest.param(
        b'{"type":"done","id":"c1","stdout":"","stderr":"","newVars":[],"durationMs":true}',
        "invalid",
        id="boolean duration",
    ),
    pytest.param(
        b'{"type":"done","id":"c1","stdout":"","stderr":"","newVars":[],"durationMs":1,'
        b'"answer":{"content":"x"}}',
        "invalid",
        id="answer not a string",
    ),
]


@pytest.mark.parametrize(("line", "reason"), REFUSED)
def test_host_refuses_bad_sandbox_lines(line: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_from_sandbox(line)
    assert caught.value.reason == reason


def test_sandbox_refuses_a_call_from_the_host() -> None:
    line = encode_message(Call(id="q1", kind="llm_query", prompts=("a",)))
    with pytest.raises(ProtocolError, match="unknown message type 'call' from the host"):
        decode_from_host(line)


def test_result_with_a_non_string_value_is_refused() -> None:
    with pytest.raises(ProtocolError, match=r"result\.value"):
        decode_from_host(b'{"type":"result","id":"q1","value":{"a":1}}')


def test_oversized_messages_are_refused_both_ways() -> None:
    message = Exec(id="c1", code="x" * 100)
    line = encode_message(message)
    assert decode_from_host(line, max_bytes=len(line) - 1) == message  # the \n is not counted
    with pytest.raises(ProtocolError) as caught:
        decode_from_host(line, max_bytes=len(line) - 2)
    assert caught.value.reason == "oversized"
    with pytest.raises(ProtocolError) as caught:
        decode_from_host(line.decode(), max_bytes=50)
    assert caught.value.reason == "oversized"
    with pytest.raises(ProtocolError) as caught:
        encode_message(message, max_bytes=50)
    assert caught.value.reason == "oversized"


def test_default_cap_is_64_mib() -> None:
    assert MAX_MESSAGE_BYTES == 64 * 1024 * 1024


def test_invalid_messages_cannot_be_built() -> None:
    with pytest.raises(ProtocolError):
        Call(id="q1", kind="llm_query", prompts=("a", "b"))
    with pytest.raises(ProtocolError):
        Done(id="c1", stdout="", stderr="", new_vars=(), duration_ms=float("inf"))
    with pytest.raises(ProtocolError):
        Exec(id="", code="x")


def test_encoding_lone_surrogates_is_refused() -> None:
    with pytest.raises(ProtocolError):
        Done(id="c1", stdout="\udcff", stderr="", new_vars=())


def test_protocol_error_is_an_internal_error_that_survives_pickling() -> None:
    err = ProtocolError("bad line", reason="oversized")
    assert isinstance(err, InternalError)
    assert err.status == 500
    assert err.to_payload() == {
        "code": "INTERNAL_ERROR",
        "message": "bad line",
        "details": {"reason": "oversized"},
    }
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is ProtocolError
    assert again.reason == "oversized"


def test_read_line_reads_messages_one_by_one_then_none_at_the_end() -> None:
    first, second = Exec(id="c1", code="a"), Shutdown()
    stream = io.BytesIO(encode_message(first) + encode_message(second))
    assert decode_from_host(read_line(stream) or b"") == first
    assert decode_from_host(read_line(stream) or b"") == second
    assert read_line(stream) is None


def test_read_line_stops_reading_past_the_cap() -> None:
    stream = io.BytesIO(b"x" * 1_000 + b"\n")
    with pytest.raises(ProtocolError) as caught:
        read_line(stream, max_bytes=100)
    assert caught.value.reason == "oversized"
    assert stream.tell() == 101  # bounded: the rest of the line was never read


def test_read_line_at_exactly_the_cap_is_accepted() -> None:
    line = b"y" * 100 + b"\n"
    assert read_line(io.BytesIO(line), max_bytes=100) == line


def test_read_line_reports_a_stream_cut_mid_message() -> None:
    with pytest.raises(ProtocolError) as caught:
        read_line(io.BytesIO(b'{"type":"shut'), max_bytes=100)
    assert caught.value.reason == "truncated"
