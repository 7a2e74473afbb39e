"""`model-governance`: the stand-in stack for development, and the stakeholders' questions to Atlas."""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_governance.connections import ATLAS_CONN_ID, WEBHDFS_CONN_ID

if TYPE_CHECKING:
    from model_governance.eventlog import Verdict


def cmd_devstack(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    try:  # the development package: installed by `make setup`, never part of the runtime wheel
        from model_governance_devstack.launcher import parse_real, start_devstack
    except ImportError:
        raise UsageError(
            "the development package is not installed (pip install -e ./devstack from the source checkout, "
            "or `make setup`)"
        ) from None

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        real = parse_real(args.real)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    ports = {f"{name}_port": getattr(args, f"{name}_port") for name in ("atlas", "mleap", "webhdfs")}
    state_dir = Path(args.state_dir)
    if state_dir.exists() and not state_dir.is_dir():
        raise UsageError(f"--state-dir {args.state_dir}: is a file, not a folder")
    with ExitStack() as context:
        try:
            stack = context.enter_context(
                start_devstack(
                    state_dir,
                    verbose=args.verbose,
                    real=real,
                    **{key: port for key, port in ports.items() if port is not None},
                )
            )
        except OSError as exc:  # a busy port, an unwritable state folder
            raise UsageError(
                f"cannot start the stand-ins: {exc.strerror or exc} ({exc.filename or 'check the ports'})"
            ) from None
        for name, value in stack.env().items():
            print(f"{name}={value}")
        sys.stdout.flush()
        print(
            f"devstack serving from {stack.state_dir}; stop with Ctrl-C or SIGTERM",
            file=sys.stderr,
            flush=True,
        )
        stop.wait()
    return 0


class UsageError(Exception):
    """A bad argument: one line on stderr, exit status 2, no traceback."""


def printable(value: object) -> str:
    """A cell or value as one line: control characters (a newline in a model's metadata) shown escaped,
    so that no value can forge lines of the output."""
    text = str(value)
    if not any(ord(c) < 32 or ord(c) == 127 or c in "\u2028\u2029" for c in text):
        return text
    return "".join(
        c.encode("unicode_escape").decode() if ord(c) < 32 or ord(c) == 127 or c in "\u2028\u2029" else c
        for c in text
    )


def iso_time(value: str) -> str:
    from model_governance.atlas.queries import epoch_millis

    try:
        epoch_millis(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO-8601 date or time (e.g. 2026-11-25 or 2026-11-25T17:00)"
        ) from None
    return value


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of 1 or more")
    return number


def non_empty(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("is empty: give a guid, a qualifiedName or a model name")
    return value.strip()


def cmd_deployments(args: argparse.Namespace) -> int:
    import itertools

    from model_governance.atlas import schema as s
    from model_governance.atlas.queries import DEPLOYMENTS_PAGE, iter_deployments
    from model_governance.hooks.atlas import AtlasHook

    keys = ("owner", "lob", "name", "version", "host_type", "endpoint", "since", "until")
    filters = {key: getattr(args, key) for key in keys}
    filters["status"] = None if args.status == "all" else args.status
    # printed as Atlas's pages arrive: one page of rows in memory however many deployments there are
    rows = iter_deployments(AtlasHook(args.atlas_conn_id), limit=args.limit, page=DEPLOYMENTS_PAGE, **filters)
    count = 0
    if args.json:  # one deployment a line: json's C encoder (indent= would take its pure-Python one)
        for row in rows:
            print("[" if count == 0 else ",")
            print("  " + json.dumps(row, sort_keys=True, separators=(", ", ": ")), end="")
            count += 1
        print("\n]" if count else "[]")
        return 0
    columns = [
        (s.DEPLOY_DATETIME, "DEPLOYED (UTC)"),
        (s.QUALIFIED_NAME, "DEPLOYMENT"),
        (s.MODEL_VERSION, "VERSION"),
        (s.OWNER, "OWNER"),
        (s.OWNER_LOB, "LOB"),
        (s.HOST_TYPE, "HOST TYPE"),
        (s.ENDPOINT_URL, "ENDPOINT"),
        (s.DEPLOY_STATUS, "STATUS"),
    ]
    cells = ([printable(row.get(key, "")) for key, _ in columns] for row in rows)
    # column widths from the first page; a later, longer cell widens its own row only
    first = list(itertools.islice(cells, DEPLOYMENTS_PAGE))
    header = [title for _, title in columns]
    widths = [max(len(cell) for cell in column) for column in zip(header, *first, strict=True)]
    for line in itertools.chain([header], first, cells):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        count += 1
    if count == 1:
        print("no deployments match", file=sys.stderr)
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from model_governance.atlas import schema as s
    from model_governance.atlas.queries import iso_millis, served_at, trace
    from model_governance.hooks.atlas import AtlasHook

    hook = AtlasHook(args.atlas_conn_id)
    if args.at is not None:  # the positional is a target: what served there at that moment
        result = trace(hook, served_at(hook, args.deployment, args.at))
    else:
        result = trace(hook, args.deployment)
    if args.json:
        answer = result.to_json()
        if args.at is not None:
            answer["servedAt"] = {"target": args.deployment, "at": args.at}
        print(json.dumps(answer, indent=2, sort_keys=True))
        return 0
    d = result.deployment
    if args.at is not None:
        print(f"served at {printable(args.deployment)} at {printable(args.at)}:")
    replaced_by = f", superseded by {printable(d[s.SUPERSEDED_BY])}" if d.get(s.SUPERSEDED_BY) else ""
    print(f"{printable(d[s.QUALIFIED_NAME])}  ({printable(d.get(s.DEPLOY_STATUS, s.DEPLOYED))}{replaced_by})")
    dates = {s.DEPLOY_TIME, s.ENDED_AT, s.APPROVED_AT}
    for label, key in [
        ("guid", "guid"),
        ("model", s.MODEL_NAME_SEED),
        ("version", s.MODEL_VERSION_SEED),
        ("type", s.MODEL_TYPE_SEED),
        ("description", s.MODEL_DESCRIPTION),
        ("owner", s.MODEL_OWNER),
        ("line of business", s.MODEL_OWNER_LOB),
        ("deployed", s.DEPLOY_DATETIME),
        ("host type", s.DEPLOY_HOST_TYPE),
        ("scoring URL", s.ENDPOINT_URL),
        ("host detail", s.DEPLOY_HOST_DETAIL),
        ("serialized object", s.DEPLOY_OBJ_SOURCE),
        ("registry", s.MODEL_REGISTRY_URL),
        ("source", s.SOURCE_LOCATION),
        ("source revision", s.SOURCE_REVISION),
        ("deployed by", s.DAG_RUN_ID),
        ("requested by", s.REQUESTED_BY),
        ("approved by", s.APPROVED_BY),
        ("approved at", s.APPROVED_AT),
        ("approval comment", s.APPROVAL_COMMENT),
        ("rollback of", s.ROLLBACK_OF),
        ("reason", s.DEPLOY_REASON),
        ("ended", s.ENDED_AT),
        ("ended by", s.ENDED_BY),
        ("end reason", s.END_REASON),
        ("validation", s.VALIDATION_STATUS),
        ("validated by", s.VALIDATED_BY),
        ("valid until", s.VALID_UNTIL),
        ("risk tier", s.RISK_TIER),
        ("event log line", s.EVENT_LOG_HEAD),
    ]:
        # Atlas stores an unset date as 0 (its type's default): not a moment
        value = iso_millis(d.get(key)) if key in dates else d.get(key)
        if value not in (None, ""):
            print(f"  {label + ':':<19}{printable(value)}")
    if not d.get(s.VALIDATION_STATUS):
        print(f"  {'validation:':<19}not recorded (modelMetadata.txt has no model.validation.* keys)")
    print("  artifacts:")
    print_table(
        [[a["role"], a["location"], a["sha256"]] for a in result.artifacts],
        ["ROLE", "LOCATION", "SHA256"],
        indent="    ",
    )
    print("  lineage inputs (Atlas lineage: these -> this deployment):")
    print_table(
        [[i["typeName"], i[s.QUALIFIED_NAME]] for i in result.lineage_inputs],
        ["TYPE", "QUALIFIED NAME"],
        indent="    ",
    )
    if result.superseded:
        print("  superseded:")
        rows = [[old[s.QUALIFIED_NAME], old.get(s.DEPLOY_DATETIME, "")] for old in result.superseded]
        print_table(rows, ["DEPLOYMENT", "DEPLOYED (UTC)"], indent="    ")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from model_governance.atlas.queries import history
    from model_governance.hooks.atlas import AtlasHook

    rows = history(AtlasHook(args.atlas_conn_id), args.target)
    if args.json:  # streamed: one page of Atlas's answers in memory at a time
        count = 0
        for row in rows:
            print("[" if count == 0 else ",")
            print(textwrap.indent(json.dumps(row, indent=2, sort_keys=True), "  "), end="")
            count += 1
        print("\n]" if count else "[]")
    else:
        count = stream_table(
            (
                [
                    r["from"],
                    r["to"] or "",
                    r["version"],
                    r["requestedBy"] or "",
                    r["approvedBy"] or "",
                    r["ended"],
                    history_note(r),
                ]
                for r in rows
            ),
            ["FROM (UTC)", "TO (UTC)", "VERSION", "REQUESTED BY", "APPROVED BY", "HOW IT ENDED", "NOTE"],
        )
    if not count:
        print(f"no deployment at {printable(args.target)} is registered in Atlas", file=sys.stderr)
    return 0


def history_note(row: dict[str, object]) -> str:
    """What a history row adds in words: what a rollback replaced and why, who ended it and why."""
    notes = []
    if row.get("rollbackOf"):
        notes.append(
            f"rollback of {row['rollbackOf']}"
            + (f": {row['deployReason']}" if row.get("deployReason") else "")
        )
    if row.get("status") in ("rolled_back", "retired") and (row.get("endedBy") or row.get("endReason")):
        notes.append(
            " ".join(
                filter(
                    None,
                    [f"by {row['endedBy']}" if row.get("endedBy") else "", str(row.get("endReason") or "")],
                )
            )
        )
    return "; ".join(notes)


def cmd_verify_log(args: argparse.Namespace) -> int:
    from model_governance import eventlog
    from model_governance.exceptions import InvalidInputError, RegistryError
    from model_governance.metadata import model_slug
    from model_governance.registry import Registry

    try:
        registry = Registry.from_root(args.registry_root, args.webhdfs_conn_id)
    except (InvalidInputError, RegistryError) as exc:  # the root as given cannot be a registry
        raise UsageError(f"--registry-root: {exc}") from None
    slug = model_slug(args.model)
    where = registry.store.url(eventlog.log_path(registry, slug))
    lines = eventlog.read_lines(registry, slug)
    verdict = eventlog.verify(lines)
    atlas: dict[str, Any] = {"checked": False, "detail": "--no-atlas given"}
    if not args.no_atlas:
        atlas, at_end = atlas_check(args, lines)
        if verdict.intact and at_end is not None:
            verdict = at_end
    if not lines and verdict.intact:
        verdict = eventlog.Verdict(
            False, 0, 0, "no event log: no event was ever recorded for this model, or the log was deleted"
        )
    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "log": where,
                    "intact": verdict.intact,
                    "events": verdict.lines,
                    "brokenAt": verdict.broken_at,
                    "reason": verdict.reason or None,
                    "atlas": atlas,
                },
                indent=2,
                sort_keys=True,
            )
        )
    else:
        print(verdict.describe(f"{printable(args.model)} ({where})"))
        print(
            f"  Atlas: {printable(atlas['detail'])}"
            if atlas["checked"]
            else f"  Atlas not checked: {printable(atlas['detail'])}; lines deleted from the end of the log "
            "cannot be detected without it"
        )
    return 0 if verdict.intact else 1


def atlas_check(args: argparse.Namespace, lines: list[bytes]) -> tuple[dict[str, Any], Verdict | None]:
    """Atlas's newest `eventLogHead` for the model against the log: where that line is, and whether the
    log's last `deployed` line is the one Atlas knows; and the verdict when that line is missing."""
    from airflow.sdk.exceptions import AirflowException

    from model_governance import eventlog
    from model_governance.atlas.queries import latest_event_log_head
    from model_governance.hooks.atlas import AtlasHook

    try:
        latest = latest_event_log_head(AtlasHook(args.atlas_conn_id), args.model)
    except (AirflowException, OSError) as exc:  # no such connection, Atlas down
        return {
            "checked": False,
            "detail": f"connection {args.atlas_conn_id!r}: {str(exc).splitlines()[0]}",
        }, None
    if latest is None:
        return {
            "checked": False,
            "detail": f"Atlas has no deployment of {args.model!r} that records an event-log line",
        }, None
    deployment, head = latest
    verdict = eventlog.check_head(lines, head, deployment)
    number = eventlog.head_line(lines, head)
    last = eventlog.last_event(lines, "deployed")
    detail = (
        f"the latest deployment, {deployment}, is line {number}"
        if number
        else f"the latest deployment, {deployment}, names line {head[:12]}…, which the log lacks"
    )
    if number and last and last[0] != number:
        detail += (
            f"; line {last[0]} (deployed {last[1].get('qualified_name')}) is later and not yet in "
            "Atlas (its registration failed or is under way)"
        )
    elif number and last:
        detail += ", the log's last deployed line"
    return {
        "checked": True,
        "detail": detail,
        "deployment": deployment,
        "eventLogHead": head,
        "line": number,
    }, (None if verdict.intact else verdict)


def stream_table(rows: Iterator[list[object]], header: list[str], first: int = 100) -> int:
    """A table printed as rows arrive: column widths from the first `first` rows; later rows widen a column
    for themselves only. Returns the number of rows."""
    batch = [[printable(cell) for cell in row] for row in itertools.islice(rows, first)]
    widths = [max(len(cell) for cell in column) for column in zip(header, *batch, strict=True)]

    def emit(cells: list[str]) -> None:
        print("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip())

    for cells in [header, *batch]:
        emit(cells)
    count = len(batch)
    for row in rows:
        emit([printable(cell) for cell in row])
        count += 1
    return count


def print_table(rows: list[list[object]], header: list[str], indent: str = "") -> None:
    table = [header, *([printable(cell) for cell in row] for row in rows)]
    widths = [max(len(cell) for cell in column) for column in zip(*table, strict=True)]
    for row in table:
        print(indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="model-governance", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    devstack = commands.add_parser(
        "devstack",
        help="serve Atlas, MLeap serving and WebHDFS stand-ins on loopback",
        description="Serve the stand-ins on loopback; print an AIRFLOW_CONN_<ID>=<json> line per connection.",
    )
    devstack.add_argument(
        "--state-dir", required=True, help="folder keeping the stand-ins' state across restarts"
    )
    devstack.add_argument("--atlas-port", type=int, help="default 21000, Atlas's own")
    devstack.add_argument("--mleap-port", type=int, help="default 65327, MLeap serving's own")
    devstack.add_argument("--webhdfs-port", type=int, help="default 9870, the NameNode's HTTP port")
    devstack.add_argument("--verbose", action="store_true", help="log every request")
    devstack.add_argument(
        "--real",
        metavar="NAMES",
        help="comma-separated services to run as the real servers, started from Maven Central artifacts: "
        "atlas, hdfs, mleap (the rest stay stand-ins)",
    )
    devstack.set_defaults(func=cmd_devstack)

    # what the Atlas commands share
    atlas_options = argparse.ArgumentParser(add_help=False)
    atlas_options.add_argument("--json", action="store_true", help="JSON instead of a table")
    atlas_options.add_argument("--atlas-conn-id", default=ATLAS_CONN_ID, help="the Atlas connection")

    deployments = commands.add_parser(
        "deployments",
        parents=[atlas_options],
        help="list model deployments from Atlas, newest first",
        description="List model deployments registered in Atlas, newest first. Filters combine with AND.",
    )
    deployments.add_argument("--owner")
    deployments.add_argument("--lob", help="the owner's line of business")
    deployments.add_argument("--name", help="the model's name (model.name)")
    deployments.add_argument("--version")
    deployments.add_argument("--host-type", dest="host_type", help="microservice or spark")
    deployments.add_argument("--endpoint", help="the scoring URL predictions are asked for")
    deployments.add_argument("--since", type=iso_time, help="deployed at or after (ISO-8601, UTC if no zone)")
    deployments.add_argument(
        "--until", type=iso_time, help="deployed at or before (ISO-8601, UTC if no zone)"
    )
    deployments.add_argument(
        "--status",
        default="all",
        choices=["all", "deployed", "superseded", "rolled_back", "retired"],
        help="deployed (serving now), superseded (replaced at its target), rolled_back (replaced by a "
        "rollback), retired (unloaded, nothing replaced it)",
    )
    deployments.add_argument("--limit", type=positive_int, default=100, help="at most this many (1 or more)")
    deployments.set_defaults(func=cmd_deployments)

    trace = commands.add_parser(
        "trace",
        parents=[atlas_options],
        help="show one deployment: owner, project, artifacts with sha256, what it superseded",
        description="Trace a deployment to its owner, README, code, training data and serialized object.",
    )
    trace.add_argument(
        "deployment",
        type=non_empty,
        metavar="DEPLOYMENT",
        help="a guid, a qualifiedName, or a name (the newest deployment of it); with --at, a target",
    )
    trace.add_argument(
        "--at",
        type=iso_time,
        metavar="TIME",
        help="what served at the target DEPLOYMENT names (host:port, host:port/models/<name>, or the scoring "
        "URL) at this moment (ISO-8601, UTC if no zone)",
    )
    trace.set_defaults(func=cmd_trace)

    history = commands.add_parser(
        "history",
        parents=[atlas_options],
        help="every deployment at a target, oldest first: from, to, version, requester, approver, ending",
        description="What served when at a target: every deployment registered there, oldest first, read "
        "from Atlas page by page.",
    )
    history.add_argument(
        "target",
        type=non_empty,
        metavar="TARGET",
        help="host:port (legacy MLeap serving), host:port/models/<name> (spring-boot), or the scoring URL",
    )
    history.set_defaults(func=cmd_history)

    verify_log = commands.add_parser(
        "verify-log",
        parents=[atlas_options],
        help="check a model's event log in the registry: intact, or where it breaks and why",
        description="Check the chain of a model's event log (<registry>/.events/<model>.jsonl): every line "
        "names the sha256 of the one before it. With Atlas, the latest deployment's eventLogHead must be a "
        "line of the log, which finds lines deleted from its end. Exit status 1 when broken.",
    )
    verify_log.add_argument("model", type=non_empty, metavar="MODEL", help="the model's name (model.name)")
    verify_log.add_argument(
        "--registry-root",
        default="hdfs:///model-registry",
        help="the registry: hdfs:///<path> through the WebHDFS connection, or a local folder "
        "(default hdfs:///model-registry, the DAGs' default)",
    )
    verify_log.add_argument("--webhdfs-conn-id", default=WEBHDFS_CONN_ID, help="the WebHDFS connection")
    verify_log.add_argument(
        "--no-atlas", action="store_true", help="check the chain only (says that Atlas was not checked)"
    )
    verify_log.set_defaults(func=cmd_verify_log)
    return parser


@contextmanager
def quiet_logs() -> Iterator[None]:
    """While a command runs, the hooks' log lines ("Trying to connect to …") go to stderr, warnings only:
    stdout holds the command's answer alone (its --json parses). Restored afterwards."""
    import logging

    import airflow  # noqa: F401  (importing Airflow configures its logging: this comes after)
    import structlog

    before = structlog.get_config()
    structlog.configure(
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    moved = []
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__):
            moved.append((handler, handler.setStream(sys.stderr)))
    try:
        yield
    finally:
        for handler, stream in moved:
            handler.setStream(stream)
        root.setLevel(level)
        structlog.configure(logger_factory=before["logger_factory"], wrapper_class=before["wrapper_class"])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "devstack":
            return args.func(args)
        with quiet_logs():
            return args.func(args)
    except UsageError as exc:
        print(f"model-governance {args.command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the service's own message, without a traceback, for operators
        from airflow.sdk.exceptions import AirflowException

        if not isinstance(exc, AirflowException):
            raise
        print(f"model-governance {args.command}: {printable(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
