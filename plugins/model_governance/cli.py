"""`model-governance`: the stand-in stack for development, and the stakeholders' questions to Atlas."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path


def cmd_devstack(args: argparse.Namespace) -> int:
    from model_governance.devstack.launcher import start_devstack

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with start_devstack(
        Path(args.state_dir),
        atlas_port=args.atlas_port,
        mleap_port=args.mleap_port,
        webhdfs_port=args.webhdfs_port,
        verbose=args.verbose,
    ) as stack:
        for name, value in stack.env().items():
            print(f"{name}={value}")
        sys.stdout.flush()
        print(f"devstack serving from {stack.state_dir}; stop with Ctrl-C or SIGTERM", file=sys.stderr, flush=True)
        stop.wait()
    return 0


def build_parser() -> argparse.ArgumentParser:
    from model_governance.devstack.launcher import DEFAULT_ATLAS_PORT, DEFAULT_MLEAP_PORT, DEFAULT_WEBHDFS_PORT

    parser = argparse.ArgumentParser(prog="model-governance", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    devstack = commands.add_parser(
        "devstack",
        help="serve Atlas, MLeap serving and WebHDFS stand-ins on loopback",
        description="Serve the stand-ins on loopback and print one AIRFLOW_CONN_<ID>=<json> line per connection.",
    )
    devstack.add_argument("--state-dir", required=True, help="folder keeping the stand-ins' state across restarts")
    devstack.add_argument("--atlas-port", type=int, default=DEFAULT_ATLAS_PORT)
    devstack.add_argument("--mleap-port", type=int, default=DEFAULT_MLEAP_PORT)
    devstack.add_argument("--webhdfs-port", type=int, default=DEFAULT_WEBHDFS_PORT)
    devstack.add_argument("--verbose", action="store_true", help="log every request")
    devstack.set_defaults(func=cmd_devstack)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
