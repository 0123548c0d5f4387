"""Operations the integration tests use: slow ones (to cancel and time out) and failing ones."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rlm.errors import InvalidInput
from rlm.operations import Operation, check_cancelled


class SlowSum(Operation):
    """A sum whose leaves take ``params.seconds`` each, checking for a cancel every 10 ms."""

    name = "slow_sum"
    input_kind = "numbers"

    def parse_params(self, params: Mapping[str, Any]) -> Any:
        seconds = params.get("seconds", 0.5)
        if not isinstance(seconds, int | float) or not 0 <= seconds <= 60:
            raise InvalidInput("seconds must be 0..60", field="input.params.seconds")
        return float(seconds)

    def leaf(self, chunk: Any, params: Any) -> Any:
        deadline = time.monotonic() + params
        while time.monotonic() < deadline:
            check_cancelled()
            time.sleep(0.01)
        return int(chunk.sum())

    def combine(self, partials: Sequence[Any], params: Any) -> Any:
        return sum(partials)


class Explode(Operation):
    """A leaf that fails the way a user's bug would."""

    name = "explode"
    input_kind = "numbers"

    def leaf(self, chunk: Any, params: Any) -> Any:
        raise ValueError("this operation always fails")

    def combine(self, partials: Sequence[Any], params: Any) -> Any:
        return 0


OPERATIONS: list[Operation] = [SlowSum(), Explode()]


class Crash(Operation):
    """A leaf that fails the way a bug of ours would (not the user's input)."""

    name = "crash"
    input_kind = "numbers"

    def leaf(self, chunk: Any, params: Any) -> Any:
        raise RuntimeError("internal failure")

    def combine(self, partials: Sequence[Any], params: Any) -> Any:
        return 0


OPERATIONS.append(Crash())


class KillWorker(Operation):
    """A leaf that ends its worker's process, every time it runs: a poison call. With
    ``params.log``, each attempt first appends a line with its pid to that file."""

    name = "kill_worker"
    input_kind = "numbers"

    def parse_params(self, params: Mapping[str, Any]) -> Any:
        return str(params.get("log", ""))

    def leaf(self, chunk: Any, params: Any) -> Any:
        if params:
            with open(params, "a") as log:
                log.write(f"{os.getpid()}\n")
        os._exit(1)

    def combine(self, partials: Sequence[Any], params: Any) -> Any:
        return 0


OPERATIONS.append(KillWorker())


class Probe(Operation):
    """Reports, per leaf, whether the chunk it got was a writable array (it must not be)."""

    name = "probe_chunks"
    input_kind = "numbers"

    def leaf(self, chunk: Any, params: Any) -> Any:
        return [[bool(chunk.flags.writeable), chunk.base is not None, len(chunk)]]

    def combine(self, partials: Sequence[Any], params: Any) -> Any:
        return [row for p in partials for row in p]


OPERATIONS.append(Probe())


class AskEach(Operation):
    """A user's own LM operation: one question per item (runs on the agent actors)."""

    name = "ask_each"
    uses_lm = True

    def parse_params(self, params: Mapping[str, Any]) -> Any:
        return {}

    def leaf(self, chunk: Any, params: Any) -> Any:
        from rlm.lm.calls import LMRequest
        from rlm.lm.handle import current_lm

        lm = current_lm()
        return [lm.complete(LMRequest.chat(f"ask {item}")) for item in chunk]

    def combine(self, partials: Sequence[Any], params: Any) -> Any:
        return [reply for partial in partials for reply in partial]


OPERATIONS.append(AskEach())


class LeakyFinish(Operation):
    """A finish that fails with a message a client must never see (paths, a credential)."""

    name = "leaky_finish"
    input_kind = "numbers"

    SECRET = "AKIA-finish-secret /srv/private/customer.csv"

    def leaf(self, chunk: Any, params: Any) -> Any:
        return int(chunk.sum())

    def combine(self, partials: Sequence[Any], params: Any) -> Any:
        return sum(partials)

    def finish(self, partial: Any, params: Any) -> Any:
        raise ValueError(f"could not open {self.SECRET}")


OPERATIONS.append(LeakyFinish())


class PrepareProbe(Operation):
    """Records each preparation of a task naming it: ``parse_params`` appends a line to the
    file ``params.marker`` (it runs where the task is prepared: an API replica), and, given
    ``params.release``, waits (up to 60 s) until that file exists, holding the preparation."""

    name = "prepare_probe"
    input_kind = "numbers"

    def parse_params(self, params: Mapping[str, Any]) -> Any:
        import os

        marker, release = params.get("marker"), params.get("release")
        if not isinstance(marker, str):
            raise InvalidInput("marker must be a path", field="input.params.marker")
        with open(marker, "a", encoding="utf-8") as out:
            out.write("prepared\n")
        deadline = time.monotonic() + 60
        while isinstance(release, str) and not os.path.exists(release):
            if time.monotonic() > deadline:
                raise InvalidInput("never released", field="input.params.release")
            time.sleep(0.01)
        return None

    def leaf(self, chunk: Any, params: Any) -> Any:
        return int(chunk.sum())

    def combine(self, partials: Sequence[Any], params: Any) -> Any:
        return sum(partials)


OPERATIONS.append(PrepareProbe())


class Stubborn(Operation):
    """A leaf that never polls for a cancel: it writes ``params.started`` and runs until the
    file ``params.release`` exists (at most 120 s), as a long C call or a careless loop would."""

    name = "stubborn"
    input_kind = "numbers"

    def parse_params(self, params: Mapping[str, Any]) -> Any:
        started, release = params.get("started"), params.get("release")
        if not isinstance(started, str) or not isinstance(release, str):
            raise InvalidInput("started and release must be paths", field="input.params")
        return (started, release)

    def leaf(self, chunk: Any, params: Any) -> Any:
        import os

        started, release = params
        with open(started, "a", encoding="utf-8") as out:
            out.write("started\n")
        deadline = time.monotonic() + 120
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)  # never check_cancelled()
        return int(chunk.sum())

    def combine(self, partials: Sequence[Any], params: Any) -> Any:
        return sum(partials)


OPERATIONS.append(Stubborn())


class WherePids(Operation):
    """Reports the process each call ran in: a leaf ``{"leaves": [pid]}``, a combine adds
    its own pid to ``combines`` (where a user's combine runs: never the core)."""

    name = "where_pids"
    input_kind = "numbers"

    def leaf(self, chunk: Any, params: Any) -> Any:
        import os

        return {"leaves": [os.getpid()], "combines": []}

    def combine(self, partials: Sequence[Any], params: Any) -> Any:
        import os

        return {
            "leaves": [pid for p in partials for pid in p["leaves"]],
            "combines": [pid for p in partials for pid in p["combines"]] + [os.getpid()],
        }


OPERATIONS.append(WherePids())


def pid_leaf(chunk: Any, params: Any) -> Any:
    """A user's leaf function (registered with ``Hypervisor.operation``): where it ran."""
    import os

    return {"leaves": [os.getpid()], "combines": []}


def pid_combine(partials: Sequence[Any], params: Any) -> Any:
    """A user's combine function: where it ran, after its children's."""
    import os

    return {
        "leaves": [pid for p in partials for pid in p["leaves"]],
        "combines": [pid for p in partials for pid in p["combines"]] + [os.getpid()],
    }
