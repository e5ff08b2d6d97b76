#!/usr/bin/env bash
# Load test for the sidecar: starts `promo-policy serve` (release build) on loopback and
# drives it from second processes (hey for a fixed rate, wrk for the peak). The load
# generator shares the machine with the server: on a 2-core box they compete for CPU.
#
#   apt-get install -y wrk hey          # once
#   benches/sidecar-load.sh [RATE] [SECONDS]   # defaults: 2000 req/s for 30 s
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-2000}
DURATION=${2:-30}
PORT=${PORT:-18189}
BIN=${BIN:-target/release/promo-policy}
REQUEST=corpus/cases/prod-allow-baseline/request.json
BASE=http://127.0.0.1:$PORT
LOG=$(mktemp)
WRAPPED=$(mktemp)

for tool in hey wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y wrk hey curl python3)" >&2; exit 2; }
done
[ -x "$BIN" ] || cargo build --release --locked

"$BIN" serve --addr "127.0.0.1:$PORT" --environment prod --watch-interval 0 \
  --at 2026-11-26T18:00:00Z 2>"$LOG" &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -f "$LOG" "$WRAPPED"' EXIT
for _ in $(seq 100); do curl -sf "$BASE/health" >/dev/null && break; sleep 0.1; done
curl -sf "$BASE/health" >/dev/null || { cat "$LOG" >&2; exit 2; }
python3 -c "import json,sys; print(json.dumps({'input': json.load(open(sys.argv[1]))}))" "$REQUEST" >"$WRAPPED"

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "== single client, 500 sequential decisions (POST /v1/promotions/evaluate)"
hey -n 500 -c 1 -m POST -T application/json -D "$REQUEST" "$BASE/v1/promotions/evaluate" \
  | sed -n '/Requests\/sec/p;/Latency distribution/,/99%/p'
echo
echo "== fixed rate: $RATE req/s for ${DURATION}s, 8 connections (POST /v1/promotions/evaluate)"
hey -z "${DURATION}s" -c 8 -q $((RATE / 8)) -m POST -T application/json -D "$REQUEST" \
  "$BASE/v1/promotions/evaluate" \
  | sed -n '/Summary/,/Average/p;/Requests\/sec/p;/Latency distribution/,/99%/p;/Status code/,$p'
for route in v1/promotions/evaluate v1/data/promo/decision; do
  body=$REQUEST
  [ "$route" = v1/data/promo/decision ] && body=$WRAPPED
  echo
  echo "== peak: wrk, 1 thread, 16 connections, 10 s (POST /$route)"
  REQUEST=$body wrk -t1 -c16 -d10s --latency -s benches/sidecar-post.lua "$BASE/$route"
done
echo
echo "== HTTP floor: wrk, 1 thread, 16 connections, 5 s (GET /health)"
wrk -t1 -c16 -d5s --latency "$BASE/health"
