"""JSON request bodies, parsed off the event loop when they are large.

FastAPI parses a declared body model on the replica's event loop, before the route's
dependencies run: a 50 MB execute body then stalls every other request of the replica for
seconds, and is parsed even when its token is refused. Routes that take large bodies read them
here instead, after authentication: bodies up to :data:`INLINE_BYTES` are parsed in place
(faster than a thread hop), larger ones — parsing, validation and whatever the route does with
them (see :func:`off_loop`) — in a worker thread, so the loop keeps answering.

Parsing failures raise FastAPI's own :class:`RequestValidationError` with the shapes it would
have produced (``json_invalid`` with the position, ``missing`` for an empty body), so they are
answered by the one handler in :mod:`serve_app.context` exactly as before.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Final, TypeVar

import orjson
from fastapi.exceptions import RequestValidationError

__all__ = ["INLINE_BYTES", "off_loop", "parse_json"]

T = TypeVar("T")

#: Bodies larger than this are parsed (and prepared) in a worker thread.
INLINE_BYTES: Final = 64 * 1024


def parse_json(raw: bytes) -> Any:
    """Parse a JSON body.

    Raises:
        RequestValidationError: an empty body (``missing``) or one that is not JSON
            (``json_invalid``, with the standard library's reason and position).
    """
    if not raw:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        # The standard library names the reason as people expect, and accepts what orjson
        # refuses but FastAPI took (NaN, Infinity, integers beyond 64 bits).
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", err.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": err.msg},
                }
            ],
            body=err.doc,
        ) from None
    except (UnicodeDecodeError, RecursionError) as err:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", 0),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": type(err).__name__},
                }
            ]
        ) from None


async def off_loop(size: int, work: Callable[[], T]) -> T:
    """Run ``work`` in place for a small body, in a worker thread for a large one.

    Args:
        size: The body's size in bytes.
        work: Parsing, validation and preparation of the body (anything CPU-bound).
    """
    if size <= INLINE_BYTES:
        return work()
    return await asyncio.to_thread(work)
