"""The ``rlm`` command line.

Commands:
    rlm run TASK.json         run a task (``-`` reads stdin); the ExecuteResponse on stdout
    rlm tasks show ID         a task's status and result
    rlm tasks list            the newest tasks
    rlm tasks cancel ID       cancel a running task
    rlm tasks watch ID        a task's events, drawn live (``--jsonl``: one JSON line each)
    rlm tasks trajectory ID   an RLM task's turns, cells and sub-calls (``--jsonl`` to save)
    rlm operations            the operations tasks may name
    rlm serve                 run the HTTP API on Ray Serve (embedded defaults)
    rlm token --sub ID        print a token the running server accepts
    rlm tenants load FILE     load orgs, teams and users with their limits (idempotent)
    rlm quota show USER       a user's quota windows
    rlm quota events          quota.threshold_exceeded events not yet delivered
    rlm db migrate            bring the PostgreSQL state database (RLM_DATABASE_URL) up to date
    rlm db status             the database's schema version and pending migrations
    rlm eval oolong           OOLONG-synth accuracy, latency, calls and cost per mode
    rlm eval record FILE      record a report in the API (the console's Evaluations view)
    rlm security events       the audit log, newest first (read from the state directory)
    rlm security verify       check the audit log's hash chain (exit 1 naming the first bad
                              record)
    rlm security policies ORG an org's security policies in force
    rlm quota events          recent quota.threshold_exceeded events and their webhook deliveries

Every command that needs the engine joins the one already running on the same state directory
(``rlm serve``, a ``rlm.connect()``): it registers its Ray address there. ``--address`` (before
or after the command), ``RLM_RAY_ADDRESS`` and ``RAY_ADDRESS`` override; with none of them and
no engine running, the command starts a local Ray of its own.

``rlm quota show`` and ``rlm tenants load`` need no engine: with none running (and no address
given) they open the state directory's quota ledger themselves, without Ray.

Exit codes (:data:`EXIT_CODES`): 0 the task completed (or the command succeeded; ``rlm tasks
watch`` exits with the watched task's code), 1 it failed or was cancelled, 2 the
request was refused, 3 the engine could not be started or joined (for 2 and 3 the error
envelope is the last line on stderr), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlm import __version__
from rlm.config import get_settings
from rlm.errors import EngineUnavailable, RLMError
from rlm.jsonable import dumps
from rlm.logs import configure_logging

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from rlm.quotas.local import QuotaCall

__all__ = ["EXIT_CODES", "EXIT_ENGINE_UNAVAILABLE", "EXIT_REFUSED", "main"]

#: The request was refused (invalid, not found, over quota...).
EXIT_REFUSED = 2
#: The engine could not be started or joined (its state directory is held by another process).
EXIT_ENGINE_UNAVAILABLE = 3

#: What each exit code of ``rlm`` means (the README's table).
EXIT_CODES: dict[int, str] = {
    0: "the command succeeded (for rlm run: the task completed)",
    1: "the task failed or was cancelled",
    EXIT_REFUSED: "the request was refused; the error envelope is the last line on stderr",
    EXIT_ENGINE_UNAVAILABLE: "the engine could not be started or joined; the error envelope, "
    "saying what holds the state directory and what to do, is the last line on stderr",
    130: "interrupted (Ctrl-C)",
}


def _dump(obj: Any, *, indent: bool = True) -> str:
    if hasattr(obj, "to_wire"):
        obj = obj.to_wire()
    return dumps(obj, indent=indent).decode()


def _fail(err: RLMError) -> int:
    # One line, last on stderr: easy for a script to read after any log lines.
    sys.stderr.write(_dump({"error": err.to_payload()}, indent=False) + "\n")
    return EXIT_ENGINE_UNAVAILABLE if isinstance(err, EngineUnavailable) else EXIT_REFUSED


def _rlm_command() -> str:
    """How to run ``rlm`` from the current shell, as the banner prints it.

    ``rlm`` when the one on ``PATH`` is this environment's, else its path (relative to the
    working directory when under it, e.g. ``.venv/bin/rlm``), else ``python -m rlm``.
    """
    bindir = Path(sys.executable).parent
    script = bindir / "rlm"
    if script.exists():
        on_path = shutil.which("rlm")
        if on_path is not None and Path(on_path).resolve() == script.resolve():
            return "rlm"
        return _shown_path(script)
    return f"{_shown_path(Path(sys.executable))} -m rlm"


def _shown_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _quiet_logs(verbose: bool) -> None:
    """Keep the notices a user cannot act on (Ray's, Serve's) off the terminal."""
    if verbose:
        return
    for name in ("ray", "ray.serve", "ray.data", "ray.tune"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _connect(args: argparse.Namespace) -> Any:
    from rlm.runtime import connect

    _quiet_logs(args.verbose)  # after Ray's import: it sets its loggers up then
    return connect(args.address)


def _quota_ledger(args: argparse.Namespace) -> AbstractContextManager[QuotaCall]:
    """The quota ledger to call (a context manager): the running engine's, else the state
    directory's opened in this process, without Ray (see :func:`rlm.quotas.local.quota_ledger`).
    """
    from rlm.quotas.local import quota_ledger

    return quota_ledger(args.address, get_settings(), lambda: _connect(args).quotas)


def _read_task(path: str) -> Any:
    from rlm.errors import InvalidInput

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise InvalidInput(f"cannot read {path}: {err.strerror}", field="task") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidInput(f"{path} is not JSON: {err}", field="task") from None


def _no_engine_to_detach() -> EngineUnavailable:
    return EngineUnavailable(
        "--detach needs a running engine to leave the task with (start `rlm serve`, or "
        "pass --address); without one, run the task without --detach"
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from rlm.inputs import prepare_input
    from rlm.models.base import parse_model
    from rlm.models.tasks import ExecuteRequest
    from rlm.operations import default_registry
    from rlm.rlmmode.request import check_not_rlm_options, is_rlm_input, parse_rlm_input

    request = _read_task(args.task)
    # Refuse a bad request before paying for a Ray start.
    parsed = parse_model(ExecuteRequest, request)
    if is_rlm_input(parsed.input):
        parse_rlm_input(parsed.input, parsed.options, get_settings().rlm)
    else:
        check_not_rlm_options(parsed.options)
        prepare_input(parsed.input, default_registry(get_settings().operations))
    if args.detach:
        from rlm.runtime.discovery import resolve_address

        if resolve_address(args.address, get_settings())[0] is None:
            raise _no_engine_to_detach()  # known before paying for a Ray start
    hv = _connect(args)
    if args.detach and hv.owns_ray:
        # The engine found above stopped before this command joined it, and this command
        # started one of its own, which stops with it: nothing would run the task once it
        # returned.
        raise _no_engine_to_detach()
    task_id = hv.submit(request)
    if args.detach:
        sys.stdout.write(task_id + "\n")  # the task runs on in the engine
        return 0
    console = Console(stderr=True)
    show_bar = console.is_terminal and not args.quiet
    try:
        if show_bar:
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            ) as bar:
                handle = bar.add_task(task_id, total=None)
                while True:
                    status = hv.status(task_id)
                    if status.progress is not None:
                        bar.update(
                            handle, completed=status.progress.current, total=status.progress.total
                        )
                    if status.status in ("completed", "failed", "cancelled"):
                        break
                    time.sleep(0.1)
        result = hv.result(task_id)
    except KeyboardInterrupt:
        hv.cancel(task_id)
        console.print(f"cancelled {task_id}")
        return 130
    sys.stdout.write(_dump(result) + "\n")
    return 0 if result.status == "completed" else 1


def _cmd_show(args: argparse.Namespace) -> int:
    if args.address is None:
        # Without a cluster to ask, read the record straight from the state file: fast, and
        # what a restarted engine would report (except live progress).
        from rlm.errors import TaskNotFound
        from rlm.tasks.store import TaskStore

        settings = get_settings()
        record = TaskStore(settings.database_path, database_url=settings.database_dsn).get(
            args.task_id
        )
        if record is None:
            raise TaskNotFound(args.task_id)
        status = record.to_status()
    else:
        status = _connect(args).status(args.task_id)
    sys.stdout.write(_dump(status) + "\n")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from datetime import datetime

    from rlm.errors import InvalidInput
    from rlm.tasks.listing import TaskCursor, TaskQuery
    from rlm.tasks.store import TaskStore

    def instant(value: str | None, name: str) -> datetime | None:
        if value is None:
            return None
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput(f"--{name}: {value!r} is not an ISO 8601 time", field=name) from None

    query = TaskQuery(
        statuses=frozenset(s.strip() for s in (args.status or "").split(",") if s.strip()),
        type=args.type,
        operation=args.operation,
        since=instant(args.since, "since"),
        until=instant(args.until, "until"),
        after=None if args.cursor is None else TaskCursor.decode(args.cursor),
        limit=args.limit,
    )
    settings = get_settings()
    store = TaskStore(settings.database_path, database_url=settings.database_dsn)
    # The state file's records as stored: a task running now reads "pending" until it ends.
    records = store.find(query)
    page = records[: query.limit]
    sys.stdout.write(_dump([r.to_status().to_wire(exclude={"result"}) for r in page]) + "\n")
    if len(records) > query.limit:
        cursor = TaskCursor(page[-1].created_at, page[-1].task_id).encode()
        sys.stderr.write(f"more: rlm tasks list --cursor {cursor} (with the same filters)\n")
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    response = _connect(args).cancel(args.task_id)
    sys.stdout.write(_dump(response) + "\n")
    return 0 if response.status == "cancelled" else 1


def _cmd_watch(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    from rlm.tasks.watch import TaskWatch

    hv = _connect(args)
    events = hv.events(args.task_id, after=args.last_event_id)
    watch = TaskWatch(args.task_id)
    if args.jsonl:
        # For scripts: every event as it comes, one JSON line each; the last is the result.
        for event in events:
            watch.apply(event)
            sys.stdout.write(_dump(event, indent=False) + "\n")
            sys.stdout.flush()
    else:
        console = Console(stderr=True)
        if console.is_terminal:
            with Live(watch, console=console, refresh_per_second=8):
                for event in events:
                    watch.apply(event)
        else:
            for event in events:
                watch.apply(event)
            console.print(watch)
        if watch.result is not None:
            sys.stdout.write(_dump(watch.result) + "\n")
    return 0 if watch.status == "completed" else 1


def _cmd_trajectory(args: argparse.Namespace) -> int:
    trajectory = _connect(args).trajectory(args.task_id)
    if args.jsonl:
        sys.stdout.writelines(_dump(e, indent=False) + "\n" for e in trajectory.events)
    else:
        sys.stdout.write(_dump(trajectory) + "\n")
    return 0


def _cmd_operations(args: argparse.Namespace) -> int:
    from rlm.operations import default_registry

    reg = default_registry()
    rows = [{"name": n, "input": reg.get(n).input_kind} for n in reg.names()]
    # RLM mode: input {"operation": "rlm", "query", "context" | "source"} (see the README).
    rows.append({"name": "rlm", "input": "context"})
    sys.stdout.write(_dump(rows) + "\n")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from rlm.settings_doc import markdown_table

    if args.markdown:
        sys.stdout.write(markdown_table())
        return 0
    # The settings in effect here (environment + defaults); secrets print as "**********".
    effective = get_settings().model_dump(mode="json")
    sys.stdout.write(_dump(effective) + "\n")
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    from rlm.auth.keys import load_signing_key
    from rlm.auth.tokens import issue_token

    settings = get_settings()
    key = load_signing_key(settings.auth, settings.state_dir, settings.env)
    token = issue_token(
        args.sub,
        args.scopes.split(),
        args.tier,
        args.team,
        args.org,
        args.ttl,
        settings=settings.auth,
        key=key,
    )
    sys.stdout.write(token + "\n")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    import ray
    from pydantic import ValidationError
    from ray import serve

    from rlm.models.base import validation_error_to_invalid_input
    from serve_app import tls
    from serve_app.deployment import build_app
    from serve_app.guard import enable as enable_guard

    base = get_settings()
    given = (
        ("host", args.host),
        ("port", args.port),
        ("tls_cert", args.tls_cert),
        ("tls_key", args.tls_key),
    )
    try:
        server = type(base.server).model_validate(
            {**base.server.model_dump(), **{k: v for k, v in given if v is not None}}
        )
    except ValidationError as err:
        raise validation_error_to_invalid_input(err, "server") from None
    settings = base.model_copy(update={"server": server})
    # Refused before anything starts: production without TLS, or a key that does not load.
    tls.require_transport(settings)
    http_options = tls.http_options(server)
    controller_options = tls.controller_options(server)
    configure_logging(settings.log_format, logging.INFO if args.verbose else logging.WARNING)
    _quiet_logs(args.verbose)
    address = args.address or settings.ray_address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        _refuse_second_engine(settings)
    if settings.database_dsn is not None:
        _claim_shared_database(settings)
    elif address is None:
        from rlm.security.store import audit_key_at_start

        audit_key_at_start(settings.state_dir)
    # The proxy guard (timeouts, connection caps, crash answers) runs in Serve's proxy, which
    # reads its callback from the environment: every process of a Ray started here inherits
    # it. A cluster joined with --address needs it in its own nodes' environment (README).
    enable_guard()
    ray.init(
        address=address,
        namespace=settings.namespace,
        include_dashboard=False,
        logging_level="WARNING" if args.verbose else "ERROR",
        log_to_driver=args.verbose,
    )
    _quiet_logs(args.verbose)  # again: Serve sets its loggers up when it starts
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        serve.start(http_options=http_options, controller_options=controller_options)
        serve.run(build_app(settings), name="rlm", route_prefix="/", blocking=False)
        _quiet_logs(args.verbose)
        url = f"{server.scheme}://{server.host}:{server.port}"
        # A self-signed certificate is its own CA: curl needs it to trust the server.
        curl_ca = "" if server.tls_cert is None else f"--cacert {server.tls_cert} "
        rlm_cmd = _rlm_command()
        state_env = (
            "" if "RLM_STATE_DIR" not in os.environ else f"RLM_STATE_DIR={settings.state_dir} "
        )
        sys.stdout.write(
            f"RLM Hypervisor is serving on {url}/v1 (state in {settings.state_dir})\n"
            f"  API docs:  {url}/docs\n"
            f"  health:    curl {curl_ca}{url}/v1/health\n"
            f'  a token:   {state_env}{rlm_cmd} token --sub alice --scopes "rlm:execute rlm:read"'
            " --tier user\n"
            f"  the CLI:   {state_env}{rlm_cmd} run task.json   (joins this engine)\n"
            "Press Ctrl-C to stop.\n"
        )
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sys.stdout.write("stopping...\n")
        serve.shutdown()
        ray.shutdown()
    return 0


def _claim_shared_database(settings: Any) -> None:
    """Before Ray starts: the shared database's schema brought up to this release (or a newer
    one refused), and this instance's audit key checked against the chain's."""
    from rlm.db.connect import ensure_schema
    from rlm.security.store import claim_key_at_start

    dsn = settings.database_dsn
    ensure_schema(dsn)
    claim_key_at_start(settings.state_dir, dsn)


def _refuse_second_engine(settings: Any) -> None:
    """Refuse to start a second engine on a state directory one already runs on (or holds)."""
    from rlm.runtime.discovery import engine_on, store_in_use

    engine = engine_on(settings)
    if engine is not None:
        raise EngineUnavailable(
            f"an engine already runs on {settings.state_dir} (pid {engine.pid} on {engine.host},"
            f" Ray at {engine.ray_address}): use it (rlm commands join it), stop it first, or"
            " set RLM_STATE_DIR to another directory",
            {"pid": engine.pid, "host": engine.host},
        )
    refusal = store_in_use(settings)
    if refusal is not None:
        raise refusal


def _cmd_tenants_load(args: argparse.Namespace) -> int:
    from rlm.tenants import apply_tenants, load_tenant_file

    tenants = load_tenant_file(Path(args.file))  # refuse a bad file before any ledger
    with _quota_ledger(args) as quotas:
        counts = apply_tenants(tenants, quotas)
    sys.stdout.write(_dump(counts) + "\n")
    return 0


def _cmd_quota_show(args: argparse.Namespace) -> int:
    with _quota_ledger(args) as quotas:
        status = quotas("user_status", args.user_id)
    if args.json or not sys.stdout.isatty():
        sys.stdout.write(_dump(status) + "\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"quota of {args.user_id}")
    columns = ("window", "agents used", "limit", "remaining", "compute h", "tokens", "cost $")
    for column in (*columns, "resets"):
        table.add_column(column)
    for name in ("daily", "weekly", "monthly"):
        p = getattr(status, name)
        tokens = str(p.tokens_used) + ("" if p.token_limit is None else f" / {p.token_limit}")
        table.add_row(
            name,
            str(p.agents_used),
            str(p.agents_limit),
            str(p.agents_remaining),
            f"{p.compute_hours_used:.3f} / {p.compute_hours_limit:g}",
            tokens,
            f"{p.cost_usd:.4f}",
            p.reset_time.isoformat(),
        )
    Console().print(table)
    return 0


def _cmd_quota_events(args: argparse.Namespace) -> int:
    # Read straight from the state file, like `rlm tasks show`: the engine moves the quota
    # ledger's events into the webhook outbox as tasks end.
    from rlm.quotas.alerts import THRESHOLD_EVENT
    from rlm.webhooks.store import WebhookStore

    settings = get_settings()
    store = WebhookStore(
        settings.database_path, settings.webhooks, database_url=settings.database_dsn
    )
    try:
        rows = store.events(THRESHOLD_EVENT, limit=args.limit)
    finally:
        store.close()
    events = [
        {**json.loads(body), "eventId": event_id, "pending": pending, "delivered": delivered}
        for event_id, body, pending, delivered in rows
    ]
    if args.json or not sys.stdout.isatty():
        sys.stdout.write(_dump(events) + "\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="quota threshold events (newest first)")
    for column in ("time", "of", "period", "threshold", "agents used / limit", "webhooks"):
        table.add_column(column)
    for e in events:
        data = e["data"]
        if "userId" in data:
            of = f"user {data['userId']}"
            window = data["usage"].get(data["period"], {})
            agents = f"{window.get('agentsUsed')} / {window.get('agentsLimit')}"
        else:  # a team's pool or an org's caps, this month
            of = f"team {data['teamId']}" if "teamId" in data else f"org {data['orgId']}"
            agents = f"{data['usage']['agentsUsed']} / {data['usage']['agentsTotal']}"
        table.add_row(
            e["timestamp"],
            of,
            data["period"],
            f"{data['threshold']} %",
            agents,
            f"{e['delivered']} delivered, {e['pending']} pending",
        )
    Console().print(table)
    return 0


def _cmd_eval_oolong(args: argparse.Namespace) -> int:
    from rlm.eval.oolong import run_command

    return run_command(args, lambda: _connect(args))


def _cmd_eval_record(args: argparse.Namespace) -> int:
    from rlm.eval.record import load_report, record_report

    run = record_report(load_report(args.report))
    sys.stdout.write(json.dumps(run, indent=2) + "\n")
    return 0


def _security_log(args: argparse.Namespace) -> Any:
    """The audit log of the state directory, read-only (no engine needed)."""
    from rlm.errors import InvalidInput
    from rlm.security.audit import AuditLog
    from rlm.security.store import (
        AUDIT_KEY_FILENAME,
        SECURITY_DB_FILENAME,
        claim_key,
        load_or_create_key,
        open_security_store,
    )

    settings = get_settings()
    state, url = settings.state_dir, settings.database_dsn
    path = state / SECURITY_DB_FILENAME
    if url is None and not path.exists():
        raise InvalidInput(f"no security log at {path}: the service has recorded nothing yet")
    key = load_or_create_key(state / AUDIT_KEY_FILENAME, create=False)
    # With RLM_DATABASE_URL: the chain every instance shares, checked with this state
    # directory's key (refused up front if it is not the chain's, rather than reported as
    # every record edited).
    conn = open_security_store(state, url, read_only=True)
    if url is not None:
        try:
            claim_key(conn, key, record=False)
        except BaseException:
            conn.close()
            raise
    return conn, AuditLog(conn, key, create=False)


def _cmd_security_events(args: argparse.Namespace) -> int:
    from datetime import datetime

    from rlm.security.audit import ALL_ORGS, decode_cursor

    conn, log = _security_log(args)
    since = datetime.fromisoformat(args.since) if args.since else None
    org: Any = ALL_ORGS if args.org is None else (None if args.org == "-" else args.org)
    events, cursor = log.page(
        org,
        limit=args.limit,
        severities=args.severity.split(",") if args.severity else None,
        since=since,
        before_seq=decode_cursor(args.cursor) if args.cursor else None,
        types=args.type.split(",") if args.type else None,
    )
    conn.close()
    if args.json or not sys.stdout.isatty():
        page = {"events": [e.to_wire() for e in events], "nextCursor": cursor}
        sys.stdout.write(_dump(page) + "\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="security events, newest first")
    for column in ("#", "time", "severity", "type", "org", "user", "message"):
        table.add_column(column)
    for e in events:
        table.add_row(
            str(e.seq),
            e.timestamp.isoformat(timespec="seconds"),
            e.severity,
            e.type or "",
            e.org_id or "-",
            e.user_id or "-",
            e.message,
        )
    Console().print(table)
    if cursor:
        Console().print(f"older: --cursor {cursor}")
    return 0


def _cmd_security_verify(args: argparse.Namespace) -> int:
    conn, log = _security_log(args)
    report = log.verify()
    conn.close()
    if args.json or not sys.stdout.isatty():
        sys.stdout.write(_dump(report.to_dict()) + "\n")
    elif report.ok:
        sys.stdout.write(f"ok: {report.records} records, head {report.head_digest}\n")
    else:
        sys.stdout.write(
            f"BROKEN at record {report.first_bad_seq}: {report.reason} "
            f"({report.records} records before it are intact)\n"
        )
    return 0 if report.ok else 1


def _cmd_security_policies(args: argparse.Namespace) -> int:
    from rlm.security.policies import PolicySet
    from rlm.security.store import PolicyStore

    conn, _ = _security_log(args)
    policies = PolicySet(PolicyStore(conn).changed(args.org)).policies()
    conn.close()
    sys.stdout.write(_dump([p.to_wire() for p in policies]) + "\n")
    return 0


def _commands(parser: argparse.ArgumentParser, dest: str, common: argparse.ArgumentParser) -> Any:
    """Subcommands of ``parser`` that each accept the ``common`` options too."""
    sub = parser.add_subparsers(dest=dest, required=True)
    add_parser = sub.add_parser

    def with_common(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return add_parser(name, parents=[common], **kwargs)

    sub.add_parser = with_common  # type: ignore[method-assign]
    return sub


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rlm``."""
    parser = argparse.ArgumentParser(prog="rlm", description="RLM Hypervisor")
    address_help = (
        "Ray cluster to join (default: the one of the engine running on the state directory,"
        " else a new local one)"
    )
    parser.add_argument("--address", default=None, help=address_help)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="keep Ray's and Serve's own log lines"
    )
    parser.add_argument("--version", action="version", version=f"rlm {__version__}")
    # Accepted after the command too (``rlm serve --address auto``); SUPPRESS keeps a value
    # given before the command when none is given after it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--address", default=argparse.SUPPRESS, help=address_help)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    sub = _commands(parser, "command", common)

    run = sub.add_parser("run", help="run a task from a JSON file ('-' for stdin)")
    run.add_argument("task")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "-d", "--detach", action="store_true", help="submit, print the taskId and return at once"
    )
    run.set_defaults(func=_cmd_run)

    tasks = sub.add_parser("tasks", help="inspect and cancel tasks")
    tasks_sub = _commands(tasks, "tasks_command", common)
    show = tasks_sub.add_parser("show", help="a task's status and result")
    show.add_argument("task_id")
    show.set_defaults(func=_cmd_show)
    listing = tasks_sub.add_parser("list", help="the newest tasks (filtered in the store)")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--status", default=None, help="one or more (comma-separated) task states")
    listing.add_argument("--type", default=None, help="recursive, parallel or sequential")
    listing.add_argument("--operation", default=None, help="the operation the input named")
    listing.add_argument("--since", default=None, help="created at or after (ISO 8601, offset)")
    listing.add_argument("--until", default=None, help="created before (ISO 8601, offset)")
    listing.add_argument("--cursor", default=None, help="the next page a previous list named")
    listing.set_defaults(func=_cmd_list)
    cancel = tasks_sub.add_parser("cancel", help="cancel a running task")
    cancel.add_argument("task_id")
    cancel.set_defaults(func=_cmd_cancel)
    watch = tasks_sub.add_parser(
        "watch", help="a task's events as they happen (exits with the task's result)"
    )
    watch.add_argument("task_id")
    watch.add_argument("--jsonl", action="store_true", help="one JSON line per event, no view")
    watch.add_argument(
        "--last-event-id", type=int, default=0, help="resume after this event (default: all)"
    )
    watch.set_defaults(func=_cmd_watch)
    trajectory = tasks_sub.add_parser(
        "trajectory", help="an RLM task's turns, code cells, sub-calls and child RLMs"
    )
    trajectory.add_argument("task_id")
    trajectory.add_argument("--jsonl", action="store_true", help="one JSON line per event")
    trajectory.set_defaults(func=_cmd_trajectory)

    srv = sub.add_parser("serve", help="run the HTTP API on Ray Serve")
    srv.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=None, help="port (default 8000)")
    srv.add_argument(
        "--tls-cert", default=None, help="PEM certificate: serve HTTPS (TLS 1.3 only) with it"
    )
    srv.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    srv.set_defaults(func=_cmd_serve)

    tok = sub.add_parser("token", help="print a token the running server accepts")
    tok.add_argument("--sub", required=True, help="the user id")
    tok.add_argument("--scopes", default="rlm:execute rlm:read", help="space-separated scopes")
    tok.add_argument("--tier", default="user", help="anonymous|user|power_user|admin|enterprise")
    tok.add_argument("--team", default=None)
    tok.add_argument("--org", default=None)
    tok.add_argument("--ttl", type=int, default=None, help="lifetime in seconds")
    tok.set_defaults(func=_cmd_token)

    tenants = sub.add_parser("tenants", help="orgs, teams and users")
    tenants_sub = _commands(tenants, "tenants_command", common)
    load = tenants_sub.add_parser("load", help="load tenants.yaml (idempotent)")
    load.add_argument("file")
    load.set_defaults(func=_cmd_tenants_load)

    quota = sub.add_parser("quota", help="quota windows")
    quota_sub = _commands(quota, "quota_command", common)
    show_q = quota_sub.add_parser("show", help="a user's daily, weekly and monthly windows")
    show_q.add_argument("user_id")
    show_q.add_argument("--json", action="store_true", help="JSON even on a terminal")
    show_q.set_defaults(func=_cmd_quota_show)
    events_q = quota_sub.add_parser(
        "events", help="recent threshold events and their webhook deliveries"
    )
    events_q.add_argument("--json", action="store_true", help="JSON even on a terminal")
    events_q.add_argument("--limit", type=int, default=50, help="how many (newest first)")
    events_q.set_defaults(func=_cmd_quota_events)

    evals = sub.add_parser("eval", help="evaluate the engine's modes on a benchmark")
    evals_sub = _commands(evals, "eval_command", common)
    oolong = evals_sub.add_parser(
        "oolong", help="OOLONG-synth: accuracy, latency, calls and cost per mode"
    )
    from rlm.eval.oolong import add_arguments

    add_arguments(oolong)
    oolong.set_defaults(func=_cmd_eval_oolong)
    record = evals_sub.add_parser(
        "record", help="record a report file in the API (POST /v1/evaluations; RLM_API_KEY)"
    )
    record.add_argument("report", help="a report written by 'rlm eval oolong --json' ('-': stdin)")
    record.set_defaults(func=_cmd_eval_record)
    security = sub.add_parser("security", help="the audit log and policies (read-only)")
    security_sub = _commands(security, "security_command", common)
    events_s = security_sub.add_parser("events", help="security events, newest first")
    events_s.add_argument("--org", default=None, help="one org ('-': events of no org)")
    events_s.add_argument("--severity", default=None, help="e.g. high,critical")
    events_s.add_argument("--type", default=None, help="e.g. auth.unauthorized,rate.limited")
    events_s.add_argument("--since", default=None, help="ISO time, e.g. 2026-01-15T10:00:00Z")
    events_s.add_argument("--limit", type=int, default=100)
    events_s.add_argument("--cursor", default=None, help="the 'older' cursor of a page")
    events_s.add_argument("--json", action="store_true", help="JSON even on a terminal")
    events_s.set_defaults(func=_cmd_security_events)
    verify = security_sub.add_parser(
        "verify", help="check the hash chain; names the first bad record (exit 1)"
    )
    verify.add_argument("--json", action="store_true", help="JSON even on a terminal")
    verify.set_defaults(func=_cmd_security_verify)
    pol = security_sub.add_parser("policies", help="an org's security policies in force")
    pol.add_argument("org")
    pol.set_defaults(func=_cmd_security_policies)

    from rlm.db.commands import add_db_commands

    add_db_commands(sub)

    ops = sub.add_parser("operations", help="the operations tasks may name")
    ops.set_defaults(func=_cmd_operations)

    conf = sub.add_parser("config", help="the settings in effect (secrets hidden)")
    conf.add_argument(
        "--markdown", action="store_true", help="every RLM_ variable with its default, as a table"
    )
    conf.set_defaults(func=_cmd_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``rlm`` command; returns its exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except RLMError as err:
        return _fail(err)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
