#!/usr/bin/env python3
"""Hostile-client loads against a real sidecar, measured (issue 12): peak memory under many
concurrent 1 MB bodies (of many small values, which decode to far more than their bytes),
and /health latency (answered within a kubelet's 1 s) while a slowloris keeps thousands of
connections trickling their headers.

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
    # Many small values decode to far more memory than their bytes: `[{},{},...]`.
    body = b'{"input": [' + b",".join([b"{}"] * (size // 3)) + b"]}"
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


def slowloris(port, count, stop):
    """Keep `count` connections trickling their headers, reopening each one the server
    closes, until `stop` is set (as a real slowloris does)."""
    socks = []
    while not stop.is_set():
        live = []
        for s in socks:
            try:
                if s.recv(1, socket.MSG_DONTWAIT) == b"":
                    s.close()
                    continue
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                continue
            live.append(s)
        socks = live
        while len(socks) < count and not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                socks.append(s)
            except OSError:
                break
        for s in socks[:50]:
            try:
                s.sendall(b"a")
            except OSError:
                pass
        time.sleep(0.2)
    for s in socks:
        s.close()


def health_latency(base, n=10):
    """n probes, as a kubelet would send them (1 s timeout), one every 0.5 s."""
    times = []
    for _ in range(n):
        start = time.monotonic()
        try:
            with urllib.request.urlopen(base + "/health", timeout=10) as r:
                ok = r.status == 200 and time.monotonic() - start <= 1.0
        except OSError:
            ok = False
        times.append((time.monotonic() - start, ok))
        time.sleep(0.5)
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
            f"{args.bodies} concurrent {args.body_bytes / 1e6:.1f} MB bodies of empty objects: peak RSS "
            f"{rss_kib(proc.pid, 'VmHWM') / 1024:.0f} MiB, statuses {tally}, {took:.1f} s"
        )

        import threading

        stop = threading.Event()
        per = max(1, args.slow // 10)
        attackers = [
            threading.Thread(target=slowloris, args=(port, per, stop), daemon=True)
            for _ in range(10)
        ]
        for t in attackers:
            t.start()
        time.sleep(15)  # past the 5 s header timeout: the attack is in steady state
        times = health_latency(base)
        stop.set()
        ok = sum(1 for _, good in times if good)
        lat = sorted(t for t, _ in times)
        print(
            f"{args.slow} slowloris connections kept open: /health {ok}/{len(times)} answered, "
            f"median {lat[len(lat) // 2] * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms; "
            f"peak RSS {rss_kib(proc.pid, 'VmHWM') / 1024:.0f} MiB"
        )
        for t in attackers:
            t.join(timeout=10)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
