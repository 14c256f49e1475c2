"""`python -m nebula_build.testing`: the loopback Nebula API as a process, so a CI
pipeline can dry-run its paid path (key, budget, balance, failures) for free.

It prints `NEBULA_BASE_URL=<url>` on its first line and serves until it is stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from nebula_build.testing.server import NebulaTestServer, fault_problem


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text}: not a port (0-65535)")
    return int(text)


def _fault(text: str) -> str:
    if (problem := fault_problem(text)) is not None:
        raise argparse.ArgumentTypeError(f"{text}: {problem}")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nebula_build.testing",
        description="Serve a loopback stand-in for the Nebula image API until stopped.",
        epilog="example: python -m nebula_build.testing --port 8790 --key ak_test "
        "--fault 500 --balance 0.01",
    )
    parser.add_argument("--port", type=_port, default=0, help="the port (default: any free one)")
    parser.add_argument("--key", default="ak_test", help="the API key it accepts")
    parser.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="FAULT",
        help="a fault for the next generation request, in order (repeatable): "
        '"500", "429:1", "reset", "wrong_size", … (see nebula_build/testing/server.py)',
    )
    parser.add_argument("--balance", help="the account balance it reports (default 1228.556)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        server = NebulaTestServer(api_key=args.key, port=args.port)
    except OSError as exc:
        print(f"error: --port {args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    with server:
        server.add_faults(*args.fault)
        if args.balance is not None:
            server.balance = args.balance
        print(f"NEBULA_BASE_URL={server.base_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
