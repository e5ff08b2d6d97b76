#!/usr/bin/env python3
"""Hostile-client loads against a real sidecar, measured (issue 12): peak memory under many
concurrent 1 MiB bodies, and /health latency while thousands of slowloris connections
trickle their headers.

    python3 benches/hostile.py [--binary target/release/promo-policy] [--bodies 100]
                               [--slow 3000]

Starts `promo-policy serve` on a free loopback port with the shipped bundle, reads the
server's peak RSS (VmHWM) from /proc, and prints one line per load. Standard library only.
"""

import argparse
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def wait_ready(base, proc):
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"the sidecar exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    sys.exit("the sidecar did not become ready")


def post_big(base, size):
    body = json.dumps({"input": {"pad": "x" * size}}).encode()
    req = urllib.request.Request(
        base + "/v1/data/promo/decision",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return "error"


def health_latency(base, n=20):
    times = []
    for _ in range(n):
        start = time.monotonic()
        try:
            with urllib.request.urlopen(base + "/health", timeout=30) as r:
                ok = r.status == 200
        except OSError:
            ok = False
        times.append((time.monotonic() - start, ok))
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default="target/release/promo-policy")
    ap.add_argument("--bodies", type=int, default=100)
    ap.add_argument("--body-bytes", type=int, default=1_000_000)
    ap.add_argument("--slow", type=int, default=3000)
    args = ap.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [args.binary, "serve", "--addr", f"127.0.0.1:{port}", "--watch-interval", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(base, proc)
        idle = rss_kib(proc.pid, "VmRSS")
        print(f"idle: RSS {idle / 1024:.0f} MiB")

        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(args.bodies) as pool:
            codes = list(pool.map(lambda _: post_big(base, args.body_bytes), range(args.bodies)))
        took = time.monotonic() - start
        tally = {str(c): codes.count(c) for c in set(codes)}
        print(
            f"{args.bodies} concurrent {args.body_bytes / 1e6:.1f} MB bodies: peak RSS "
            f"{rss_kib(proc.pid, 'VmHWM') / 1024:.0f} MiB, statuses {tally}, {took:.1f} s"
        )

        slow = []
        for _ in range(args.slow):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(s)
        times = health_latency(base)
        ok = sum(1 for _, good in times if good)
        lat = sorted(t for t, _ in times)
        print(
            f"{args.slow} slowloris connections open: /health {ok}/{len(times)} answered, "
            f"median {lat[len(lat) // 2] * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms; "
            f"peak RSS {rss_kib(proc.pid, 'VmHWM') / 1024:.0f} MiB"
        )
        for s in slow:
            s.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
