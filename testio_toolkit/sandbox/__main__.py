"""Serve a sandbox from a terminal: ``python -m testio_toolkit.sandbox --preset medium``."""

from __future__ import annotations

import argparse

from . import PRESETS, Sandbox


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, print the base URL, serve until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m testio_toolkit.sandbox")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--token", default="sandbox-token")
    args = parser.parse_args(argv)
    sandbox = Sandbox(
        preset=args.preset,
        seed=args.seed,
        port=args.port,
        latency_ms=args.latency_ms,
        token=args.token,
    ).start()
    print(
        f"TestIO sandbox ({args.preset}, seed {args.seed}) at {sandbox.url}  (Ctrl-C stops)",
        flush=True,
    )
    sandbox.serve_forever()


if __name__ == "__main__":
    main()
