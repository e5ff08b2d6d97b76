#!/usr/bin/env bash
# Decision logging's cost to the sidecar, measured side by side in one run (issue 18):
#  1. peak signed decisions/s with decision logging off vs on (a local collector that
#     accepts every batch), alternating rounds so drift hits both sides alike;
#  2. the log buffer's memory at its bound: two sidecars take the same load, one without
#     a log, one shipping to a collector that is down (so its buffer fills and drops the
#     oldest); the difference in peak RSS is what the full buffer holds.
#
#   apt-get install -y wrk hey          # once
#   benches/decision-log-load.sh [ROUNDS] [SECONDS] [BUFFER_EVENTS]   # defaults: 3 10 10000
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECONDS_PER_ROUND=${2:-10}
BUFFER=${3:-10000}
BIN=${BIN:-target/release/promo-policy}
REQUEST=corpus/cases/prod-allow-baseline/request.json
BASE_PORT=${BASE_PORT:-18200}
OFF=$((BASE_PORT)) ON=$((BASE_PORT + 1)) DEAD=$((BASE_PORT + 2)) PLAIN=$((BASE_PORT + 3))
SINK=$((BASE_PORT + 4)) NOBODY=$((BASE_PORT + 5))
TMP=$(mktemp -d)
PIDS=()
declare -A PID_OF

for tool in hey wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y wrk hey curl python3)" >&2; exit 2; }
done
[ -x "$BIN" ] || cargo build --release --locked
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

# The collector: accepts every POST with 200 and keeps nothing but a count.
cat >"$TMP/sink.py" <<'PY'
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
python3 "$TMP/sink.py" "$SINK" & PIDS+=($!)

serve() { # PORT [extra serve flags...]
  local port=$1; shift
  "$BIN" serve --addr "127.0.0.1:$port" --environment prod --watch-interval 0 \
    --at 2026-11-26T18:00:00Z "$@" 2>"$TMP/serve-$port.log" & PIDS+=($!)
  PID_OF[$port]=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && return; sleep 0.1; done
  cat "$TMP/serve-$port.log" >&2; exit 2
}
serve "$OFF"
serve "$ON" --decision-log-url "http://127.0.0.1:$SINK/logs"
serve "$PLAIN"
serve "$DEAD" --decision-log-url "http://127.0.0.1:$NOBODY/logs" --decision-log-buffer "$BUFFER"

peak() { # PORT -> requests/s
  REQUEST=$REQUEST wrk -t1 -c16 -d"${SECONDS_PER_ROUND}s" -s benches/sidecar-post.lua \
    "http://127.0.0.1:$1/v1/promotions/evaluate" | awk '/Requests\/sec/ {print $2}'
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== peak decisions/s, wrk 1 thread 16 connections ${SECONDS_PER_ROUND}s, $ROUNDS alternating rounds"
: >"$TMP/off"; : >"$TMP/on"
for i in $(seq "$ROUNDS"); do
  off=$(peak "$OFF"); on=$(peak "$ON")
  echo "round $i: log off $off/s, log on $on/s"
  echo "$off" >>"$TMP/off"; echo "$on" >>"$TMP/on"
done
m_off=$(median <"$TMP/off"); m_on=$(median <"$TMP/on")
echo "median: off $m_off/s, on $m_on/s, ratio on/off $(python3 -c "print(f'{$m_on/$m_off:.3f}')")"
shipped=$(curl -s "http://127.0.0.1:$ON/metrics" | awk '/^promo_decision_log_events_total\{result="sent"\}/ {print $2}')
echo "events shipped by the logging sidecar: ${shipped:-?}"

echo
N=$((BUFFER * 3 / 2))
echo "== buffer at its bound: $N decisions to a sidecar whose collector is down (buffer $BUFFER events), and to one without a log"
for port in "$PLAIN" "$DEAD"; do
  hey -n "$N" -c 8 -m POST -T application/json -D "$REQUEST" \
    "http://127.0.0.1:$port/v1/promotions/evaluate" >/dev/null
done
hwm() { awk '/VmHWM/ {print $2}' "/proc/${PID_OF[$1]}/status"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/${PID_OF[$1]}/status"; }
plain_hwm=$(hwm "$PLAIN"); dead_hwm=$(hwm "$DEAD")
echo "peak RSS without a log: $((plain_hwm / 1024)) MiB; with a full buffer: $((dead_hwm / 1024)) MiB (now $(( $(rss "$DEAD") / 1024)) MiB)"
echo "the full buffer costs $(((dead_hwm - plain_hwm) / 1024)) MiB"
curl -s "http://127.0.0.1:$DEAD/metrics" | grep '^promo_decision_log_events_total' || true
