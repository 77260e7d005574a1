"""``python -m coffee_nb.sandbox --port 8765``: serve the sandbox for any OpenAI client."""

from __future__ import annotations

import argparse

from coffee_nb.sandbox._catalog import MODELS
from coffee_nb.sandbox._server import SandboxServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m coffee_nb.sandbox",
        description="Offline OpenAI-compatible server with fault injection (loopback only).",
    )
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--seed", type=int, default=0, help="seed for latency and fault draws")
    parser.add_argument("--latency-scale", type=float, default=1.0, help="multiply simulated latency (0: none)")
    args = parser.parse_args(argv)
    if args.port < 0 or args.port > 65535:
        parser.error(f"--port must be within 0..65535, got {args.port}")
    if args.latency_scale < 0:
        parser.error("--latency-scale must be >= 0")
    print("models: " + ", ".join(f"sandbox/{m}" for m in MODELS), flush=True)
    SandboxServer(port=args.port, seed=args.seed, latency_scale=args.latency_scale).serve_forever()


if __name__ == "__main__":
    main()
