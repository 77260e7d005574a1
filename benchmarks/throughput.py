"""Requests/s through the sandbox (in its own process): AutoPicker vs bare ChatOpenAI vs raw httpx.

Each variant sends the same payloads with concurrency 64 (``abatch(max_concurrency=64)`` / a
semaphore for raw httpx); variants are interleaved over rounds so machine noise hits them alike.

    .venv/bin/python benchmarks/throughput.py [--requests 2000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time

import httpx
from langchain_openai import ChatOpenAI

from coffee_nb import AutoPicker, get_async_http_client

CONCURRENCY = 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sandbox() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "coffee_nb.sandbox", "--port", str(port), "--latency-scale", "0"],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(300):
        try:
            httpx.get(f"{url}/models", timeout=1)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("sandbox did not start")


async def run_langchain(model: object, prompts: list[str]) -> float:
    start = time.perf_counter()
    out = await model.abatch(prompts, config={"max_concurrency": CONCURRENCY})  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - start
    assert len(out) == len(prompts) and all(m.content for m in out)
    return len(prompts) / elapsed


async def run_raw(url: str, prompts: list[str]) -> float:
    client = get_async_http_client()
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(p: str) -> None:
        async with sem:
            r = await client.post(
                f"{url}/chat/completions",
                json={"model": "fast", "messages": [{"role": "user", "content": p}]},
                headers={"authorization": "Bearer sandbox"},
            )
            r.raise_for_status()
            r.json()

    start = time.perf_counter()
    await asyncio.gather(*(one(p) for p in prompts))
    return len(prompts) / (time.perf_counter() - start)


async def main_async(requests: int, rounds: int) -> None:
    proc, url = start_sandbox()
    try:
        chat = ChatOpenAI(
            model="fast",
            base_url=url,
            api_key="sandbox",
            max_retries=0,
            http_async_client=get_async_http_client(),
        )
        picker = AutoPicker(chat)
        prompts = [f"request {i}: tell me something" for i in range(requests)]
        warm = prompts[:200]
        await run_langchain(chat, warm)
        await run_langchain(picker, warm)
        await run_raw(url, warm)
        rates: dict[str, list[float]] = {"raw httpx": [], "ChatOpenAI": [], "AutoPicker": []}
        for _ in range(rounds):
            rates["raw httpx"].append(await run_raw(url, prompts))
            rates["ChatOpenAI"].append(await run_langchain(chat, prompts))
            rates["AutoPicker"].append(await run_langchain(picker, prompts))
        med = {k: statistics.median(v) for k, v in rates.items()}
        print(f"{requests} requests x {rounds} rounds, concurrency {CONCURRENCY}, sandbox in its own process")
        for name, rate in med.items():
            print(f"  {name:<12} {rate:8.0f} req/s   (rounds: {', '.join(f'{r:.0f}' for r in rates[name])})")
        print(f"  AutoPicker / ChatOpenAI: {med['AutoPicker'] / med['ChatOpenAI']:.2f}  (target >= 0.95)")
        print(f"  ChatOpenAI / raw httpx:  {med['ChatOpenAI'] / med['raw httpx']:.2f}")
        print(f"  the sandbox sustains at least {med['raw httpx']:.0f} req/s (raw httpx against it, 2 cores shared)")
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main_async(args.requests, args.rounds))


if __name__ == "__main__":
    main()
