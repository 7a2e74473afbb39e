"""`model-governance`: the stand-in stack for development, and the stakeholders' questions to Atlas."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from model_governance.connections import ATLAS_CONN_ID


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
    from model_governance.atlas.queries import trace
    from model_governance.hooks.atlas import AtlasHook

    result = trace(AtlasHook(args.atlas_conn_id), args.deployment)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, sort_keys=True))
        return 0
    d = result.deployment
    replaced_by = f", superseded by {printable(d[s.SUPERSEDED_BY])}" if d.get(s.SUPERSEDED_BY) else ""
    print(f"{printable(d[s.QUALIFIED_NAME])}  ({printable(d.get(s.DEPLOY_STATUS, s.DEPLOYED))}{replaced_by})")
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
    ]:
        if d.get(key) not in (None, ""):
            print(f"  {label + ':':<19}{printable(d[key])}")
    print("  artifacts:")
    print_table(
        [[a["role"], a["location"], a["sha256"]] for a in result.artifacts],
        ["ROLE", "LOCATION", "SHA256"],
        indent="    ",
    )
    if result.superseded:
        print("  superseded:")
        rows = [[old[s.QUALIFIED_NAME], old.get(s.DEPLOY_DATETIME, "")] for old in result.superseded]
        print_table(rows, ["DEPLOYMENT", "DEPLOYED (UTC)"], indent="    ")
    return 0


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
    # `retired` is not offered until something retires a deployment (issue 15): nothing sets it yet
    deployments.add_argument(
        "--status",
        default="all",
        choices=["all", "deployed", "superseded"],
        help="deployed (serving now) or superseded (replaced at its target)",
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
        "deployment", type=non_empty, help="a guid, a qualifiedName, or a name (the newest deployment of it)"
    )
    trace.set_defaults(func=cmd_trace)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
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
