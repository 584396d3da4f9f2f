"""The HTTP service under load: one client at a time against 1-128 concurrent clients.

    python -m benchmarks.speed.serve_load [--model runs/.../model] [--requests 2000]
        [--clients 1 8 32 128] [--server-arg batching.max_wait_ms=2 ...]
        [--poison-every 50]

Starts the real service (``python -m topictone.infer.service``) on 127.0.0.1 at a free port, waits
for ``/ready``, then sends the same ``/predict`` requests (1-4 demo headlines each) one at
a time (the baseline) and from N concurrent clients, each on its own keep-alive
connection. Prints a markdown table: requests/s, texts/s, p50/p99 latency, errors and
throughput against the baseline. Targets: no errors up to 128 clients; at 32 clients at
least 3x the baseline's throughput with p99 <= 1 s. Then sends maximum-size requests
(just under ``max_body_bytes``) and prints the service's peak resident memory.
Without --model it first trains the default TF-IDF config on the demo corpus (not timed).
Client and service share the machine; the client is aiohttp (not a topictone
dependency: ``pip install aiohttp``), sending pre-encoded bodies. It first prints the
CPU and its vector flags (avx2, avx512f, avx512_bf16, avx512_vnni, avx_vnni).

With ``--poison-every N`` every Nth request is poisoned: a lone surrogate sent as a raw
``\ud800`` JSON escape, or a text that normalises to nothing, in turn. Each must be a
422 for its own request only: the table adds the good requests that failed (must be 0)
and the poisoned requests answered 422 (must be all of them).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, demo_model, demo_texts, print_cpu, print_header

try:
    import aiohttp  # httpx's pool managed 88 requests/s from 32 clients here, aiohttp 560
except ImportError:
    raise SystemExit("this benchmark needs aiohttp: pip install aiohttp") from None

MAX_BODY = 8 << 20  # conf/inference/serve.yaml max_body_bytes
MAX_CHARS = 100_000  # conf/inference/serve.yaml limits.max_chars
COLUMNS = (
    "clients",
    "requests",
    "requests/s",
    "texts/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "vs one at a time",
)
POISON_COLUMNS = ("good failed", "poisoned 422")
# JSON escapes, as a client may send them: a lone surrogate, then only invisible space.
POISONS = (
    b'{"texts": ["Army tests new missile", "\\ud800 cut in half"]}',
    b'{"texts": ["Army tests new missile", "\\u200b \\n\\t\\u00ad"]}',
)


@dataclass(frozen=True)
class Body:
    data: bytes
    texts: int
    poisoned: bool = False


def request_bodies(count: int, poison_every: int = 0) -> list[Body]:
    """``count`` /predict bodies of 1-4 headlines each (cycled from the demo corpus);
    with ``poison_every``, every such request is one of POISONS instead, in turn."""
    headlines = itertools.cycle([t for t in demo_texts() if "\n" not in t])
    poisons = itertools.cycle(POISONS)
    bodies = []
    for i in range(count):
        if poison_every and i % poison_every == poison_every - 1:
            bodies.append(Body(next(poisons), 2, poisoned=True))
            continue
        texts = [next(headlines) for _ in range(1 + i % 4)]
        bodies.append(Body(json.dumps({"texts": texts}, ensure_ascii=False).encode(), len(texts)))
    return bodies


def max_size_bodies() -> dict[str, bytes]:
    """Bodies just under MAX_BODY: max_texts texts of about 8 KB, and texts at MAX_CHARS."""
    articles = "\n\n".join(t for t in demo_texts() if "\n" in t)
    articles = articles * (MAX_CHARS // len(articles) + 2)
    per_char = len(articles.encode()) / len(articles)
    piece = int((MAX_BODY - 8192) / 1024 / per_char)
    pieces = [articles[i : i + piece] for i in range(0, len(articles) - piece, piece)]

    def fill(pool: list[str], cap: int) -> bytes:
        chosen: list[str] = []
        size = len(b'{"texts": []}')
        for text in itertools.cycle(pool):
            size += len(json.dumps(text, ensure_ascii=False).encode()) + 2
            if size > MAX_BODY - 1024 or len(chosen) == cap:
                return json.dumps({"texts": chosen}, ensure_ascii=False).encode()
            chosen.append(text)
        raise AssertionError("unreachable")

    return {
        "1,024 article excerpts (max_texts)": fill(pieces, 1024),
        f"texts of {MAX_CHARS:,} characters (max_chars)": fill([articles[:MAX_CHARS]], 1024),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memory_kib(pid: int) -> dict[str, int]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


async def wait_ready(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise SystemExit(f"the service exited with code {server.returncode}")
            try:
                async with session.get(f"{url}/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"the service was not ready within {timeout:.0f} s")


async def load(url: str, bodies: list[Body], clients: int) -> dict[str, float]:
    """Send every body once from ``clients`` concurrent clients; latencies and errors.

    An error is a good request without a 200 or a poisoned one without its 422."""
    latencies: list[float] = []
    errors = good_failed = poisoned_422 = 0
    texts = 0
    next_body = iter(bodies)
    headers = {"content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors, good_failed, poisoned_422, texts
        for body in next_body:
            start = time.perf_counter()
            try:
                async with session.post(
                    f"{url}/predict", data=body.data, headers=headers
                ) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                status = 0
            latencies.append(time.perf_counter() - start)
            ok = status == (422 if body.poisoned else 200)
            errors += not ok
            good_failed += not ok and not body.poisoned
            poisoned_422 += ok and body.poisoned
            texts += body.texts if ok and not body.poisoned else 0

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "tps": texts / elapsed,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "errors": errors,
        "good_failed": good_failed,
        "poisoned_422": poisoned_422,
        "poisoned": sum(body.poisoned for body in bodies),
    }


async def post_once(url: str, body: bytes) -> tuple[int, float]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        start = time.perf_counter()
        async with session.post(
            f"{url}/predict", data=body, headers={"content-type": "application/json"}
        ) as response:
            await response.read()
            return response.status, time.perf_counter() - start


async def bench(url: str, server: subprocess.Popen, args: argparse.Namespace) -> None:
    await wait_ready(url, server)
    ready = memory_kib(server.pid)["VmRSS"]
    bodies = request_bodies(args.requests, args.poison_every)
    await load(url, bodies[:200], 8)  # warm-up: first-call costs, connection set-up
    rows = [("one at a time (baseline)", await load(url, bodies, 1))]
    for clients in args.clients:
        rows.append((str(clients), await load(url, bodies, clients)))
    print_table(rows, poisoned=bool(args.poison_every))
    if args.skip_memory:
        return
    after = memory_kib(server.pid)
    print(
        f"\nservice RSS: {ready / 1024:.0f} MiB when ready, {after['VmRSS'] / 1024:.0f} MiB "
        f"after the load runs (peak {after['VmHWM'] / 1024:.0f} MiB)"
    )
    for name, body in max_size_bodies().items():
        status, seconds = await post_once(url, body)
        peak = memory_kib(server.pid)["VmHWM"]
        print(
            f"max-size request, {name}: {len(body) / 2**20:.2f} MiB body, HTTP {status}, "
            f"{seconds:.1f} s; peak RSS so far {peak / 1024:.0f} MiB"
        )


def print_table(rows: list[tuple[str, dict[str, float]]], poisoned: bool) -> None:
    columns = COLUMNS + POISON_COLUMNS if poisoned else COLUMNS
    base = rows[0][1]["rps"]
    print_header(*columns)
    for name, r in rows:
        cells = (
            f"| {name} | {r['requests']:,.0f} | {r['rps']:.0f} | {r['tps']:.0f} | "
            f"{r['p50']:.1f} | {r['p99']:.1f} | {r['errors']:.0f} | {r['rps'] / base:.2f}x |"
        )
        if poisoned:
            cells += f" {r['good_failed']:.0f} | {r['poisoned_422']:.0f} of {r['poisoned']:.0f} |"
        print(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--requests", type=int, default=2000, help="requests per row")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--server-arg", action="append", default=[], help="a serve override")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--poison-every", type=int, default=0, metavar="N", help="every Nth request poisoned"
    )
    args = parser.parse_args()
    if args.poison_every < 0:
        parser.error("--poison-every must be at least 0")
    print_cpu()
    with tempfile.TemporaryDirectory() as tmp:
        model = demo_model(args.model, Path(tmp))
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "topictone.infer.service",
            f"model={model.resolve()}",
            f"port={port}",
            "log_level=warning",
            "access_log=false",
            *args.server_arg,
        ]
        server = subprocess.Popen(command, cwd=ROOT)
        try:
            asyncio.run(bench(f"http://127.0.0.1:{port}", server, args))
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
