"""``make hostile-simulator``: the simulator against hostile clients, with its RSS measured.

``python -m benchmarks.hostile_simulator [--mb 200]`` starts ``mock-ci-server --port 0`` in a
subprocess and, reading the server's own RSS from ``/proc``, sends: a huge JSON POST announced
with Content-Length, the same body chunked (no length), JSON nested 1,000 and 100,000 deep on
``/_sim/seed`` and in a CI form field, and 300 idle connections followed by one normal
request. It prints one line per case and, last, one JSON object with the figures. Nothing is
tuned to pass: a 500, a hang or a timeout is printed as such.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

__all__ = ["main"]


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def _hwm_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def _raw_post(port: int, head: bytes, body_chunks: Any, timeout: float = 60.0) -> tuple[str, float]:
    """Send ``head`` then the chunks until the server answers or hangs up; status line + s."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed while we were still sending: the point
        reply = b""
        try:
            while b"\r\n" not in reply:
                data = sock.recv(65536)
                if not data:
                    break
                reply += data
        except OSError as exc:
            return f"no answer ({type(exc).__name__})", time.monotonic() - start
    return reply.split(b"\r\n", 1)[0].decode(errors="replace"), time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="Size of the huge bodies.")
    args = parser.parse_args(argv)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mock_ci_server.cli", "--port", "0", "--seed-orders", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    report: dict[str, Any] = {}
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            found = re.search(r"serving on (\S+)", line)
            if found:
                url = found.group(1)
                break
        port = int(url.rsplit(":", 1)[1])
        requests.get(f"{url}/_sim/health", timeout=10)
        report["rss_mb_idle"] = round(_rss_mb(proc.pid), 1)
        size = args.mb * 1024 * 1024
        piece = b"[" + b"1," * (512 * 1024 - 1) + b"1]"  # 1 MB of a valid-looking JSON array

        def body() -> Any:
            for _ in range(args.mb):
                yield piece

        status, seconds = _raw_post(
            port,
            b"POST /_sim/seed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {size}\r\n\r\n".encode(),
            body(),
        )
        report["huge_post_content_length"] = {"status": status, "seconds": round(seconds, 3)}

        def chunked() -> Any:
            for _ in range(args.mb):
                yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            yield b"0\r\n\r\n"

        status, seconds = _raw_post(
            port,
            b"POST /_sim/seed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            chunked(),
        )
        report["huge_post_chunked"] = {"status": status, "seconds": round(seconds, 3)}
        for levels in (1_000, 100_000):
            nested = "[" * levels + "]" * levels
            control = requests.post(
                f"{url}/_sim/seed",
                data=nested,
                headers={"Content-Type": "application/json"},
                timeout=30,
            )
            api = requests.post(
                f"{url}/api/v4/mark_exported",
                data={"supplier_id": "90001", "token": "x", "ci_lineitem_ids": nested},
                timeout=30,
            )
            report[f"json_depth_{levels}"] = {
                "/_sim/seed": control.status_code,
                "/api/v4/mark_exported": api.status_code,
                "reason": control.json().get("reason"),
            }
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
        time.sleep(0.5)
        start = time.monotonic()
        try:
            health = requests.get(f"{url}/_sim/health", timeout=30).status_code
        except requests.RequestException as exc:
            health = f"failed: {type(exc).__name__}"  # type: ignore[assignment]
        report["health_behind_300_idle"] = {
            "status": health,
            "seconds": round(time.monotonic() - start, 3),
        }
        for sock in idle:
            sock.close()
        report["rss_mb_after"] = round(_rss_mb(proc.pid), 1)
        report["rss_mb_peak"] = round(_hwm_mb(proc.pid), 1)
    finally:
        proc.kill()
        proc.wait()
    for key, value in report.items():
        print(f"{key:28} {value}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
