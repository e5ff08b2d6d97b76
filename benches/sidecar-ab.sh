#!/usr/bin/env bash
# Two sidecar binaries side by side (issue 19): the same baseline decision
# (`POST /v1/promotions/evaluate`), peak signed decisions/s with wrk (1 thread, 16
# connections) and the single-client latency with hey, alternating A and B for ROUNDS
# rounds in one run, each binary serving on its own port with `--environment prod`.
# Used to measure the allocator change (glibc malloc vs mimalloc):
#
#   cargo build --release --locked --no-default-features --features server
#   cp target/release/promo-policy /tmp/promo-glibc
#   cargo build --release --locked
#   benches/sidecar-ab.sh /tmp/promo-glibc target/release/promo-policy [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
A=${1:?usage: sidecar-ab.sh BIN_A BIN_B [ROUNDS] [SECONDS]}
B=${2:?usage: sidecar-ab.sh BIN_A BIN_B [ROUNDS] [SECONDS]}
ROUNDS=${3:-3}
SECS=${4:-8}
REQUEST=corpus/cases/prod-allow-baseline/request.json
PORT_A=${PORT_A:-18240}
PORT_B=${PORT_B:-18241}
PIDS=()
for tool in hey wrk curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y wrk hey curl)" >&2; exit 2; }
done
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
start() {
  "$1" serve --addr "127.0.0.1:$2" --environment prod --watch-interval 0 \
    --at 2026-11-26T18:00:00Z 2>/dev/null &
  PIDS+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$2/health" >/dev/null && return; sleep 0.1; done
  echo "sidecar $1 did not start on $2" >&2; exit 2
}
start "$A" "$PORT_A"
start "$B" "$PORT_B"
echo "A: $A"
echo "B: $B"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
  for side in A B; do
    port=$PORT_A; [ "$side" = B ] && port=$PORT_B
    url="http://127.0.0.1:$port/v1/promotions/evaluate"
    peak=$(REQUEST=$REQUEST wrk -t1 -c16 -d"${SECS}s" -s benches/sidecar-post.lua "$url" \
      | awk '/Requests\/sec/ {print $2}')
    single=$(hey -n 300 -c 1 -m POST -T application/json -D "$REQUEST" "$url" \
      | awk '/50% in/ {printf "%.2f", $3 * 1000}')
    echo "round $round $side: peak $peak decisions/s, single client p50 $single ms"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
