"""A small keep-alive HTTP/1.1 load generator (bounded in count, loopback only)."""

from __future__ import annotations

import asyncio
import statistics
import time


async def _worker(host: str, port: int, path: str, cookie: str, count: int, latencies: list[float], statuses: dict):
    reader, writer = await asyncio.open_connection(host, port)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/html\r\n"
        + (f"Cookie: {cookie}\r\n" if cookie else "")
        + "\r\n"
    ).encode()
    try:
        for _ in range(count):
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def run_load(host: str, port: int, path: str, cookie: str = "", requests: int = 2000, concurrency: int = 8) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    per_worker = requests // concurrency
    start = time.perf_counter()
    await asyncio.gather(*[_worker(host, port, path, cookie, per_worker, latencies, statuses) for _ in range(concurrency)])
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "statuses": statuses,
    }
