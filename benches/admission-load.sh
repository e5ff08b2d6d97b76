#!/usr/bin/env bash
# Admission latency (issue 17): the API server waits on the webhook, so p50/p99 at a fixed
# rate matter. One sidecar (release build, `--environment prod`) with the signed decision
# for the baseline artifact in `--decisions DIR`; a Pod AdmissionReview with three
# containers pinned by digest, POSTed to /v1/admission at a fixed rate, next to the same
# rate of promotion decisions and the /health floor, in one run. The load generator shares
# the two cores with the sidecar.
#
#   apt-get install -y hey wrk            # once
#   benches/admission-load.sh [RATE] [SECONDS]   # defaults: 1000 req/s for 20 s
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-1000}
DURATION=${2:-20}
PORT=${PORT:-18230}
BIN=${BIN:-target/release/promo-policy}
AT=2026-11-26T18:00:00Z
REQUEST=corpus/cases/prod-allow-baseline/request.json
BASE=http://127.0.0.1:$PORT
TMP=$(mktemp -d)

for tool in hey curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y hey curl python3)" >&2; exit 2; }
done
[ -x "$BIN" ] || cargo build --release --locked

# The signed decision that allowed the baseline artifact into prod, and a Pod whose three
# containers run it (the corpus signs provenance for one artifact, so the three images
# share its digest under three names: three lookups and checks per review).
mkdir -p "$TMP/decisions"
"$BIN" eval "$REQUEST" --at "$AT" --format json >"$TMP/signed.json"
python3 - "$TMP" "$REQUEST" <<'PY'
import json, sys
tmp, request = sys.argv[1], sys.argv[2]
signed = json.load(open(f"{tmp}/signed.json"))
assert signed["decision"]["allowed"], "the baseline must be allowed"
json.dump(signed["envelope"], open(f"{tmp}/decisions/baseline.json", "w"))
digest = json.load(open(request))["artifact"]["digest"]["sha256"]
images = [f"registry.example.com/payments/{n}@sha256:{digest}" for n in ("api", "worker", "migrate")]
pod = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "web", "namespace": "shop"},
       "spec": {"containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]}}
review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
          "request": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                      "kind": {"group": "", "version": "v1", "kind": "Pod"},
                      "resource": {"group": "", "version": "v1", "resource": "pods"},
                      "namespace": "shop", "name": "web", "operation": "CREATE",
                      "userInfo": {"username": "deployer"}, "object": pod,
                      "oldObject": None, "dryRun": False}}
json.dump(review, open(f"{tmp}/review.json", "w"))
PY

"$BIN" serve --addr "127.0.0.1:$PORT" --environment prod --watch-interval 0 --at "$AT" \
  --decisions "$TMP/decisions" 2>"$TMP/serve.log" &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 100); do curl -sf "$BASE/health" >/dev/null && break; sleep 0.1; done
curl -sf "$BASE/health" >/dev/null || { cat "$TMP/serve.log" >&2; exit 2; }
allowed=$(curl -s -H 'Content-Type: application/json' --data-binary "@$TMP/review.json" "$BASE/v1/admission" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["response"]["allowed"])')
[ "$allowed" = True ] || { echo "the review was not admitted: check the setup" >&2; exit 2; }

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
fixed() { # ROUTE BODY
  echo
  echo "== fixed rate: $RATE req/s for ${DURATION}s, 8 connections (POST /$1)"
  hey -z "${DURATION}s" -c 8 -q $((RATE / 8)) -m POST -T application/json -D "$2" "$BASE/$1" \
    | sed -n '/Requests\/sec/p;/Latency distribution/,/99%/p;/Status code/,$p'
}
fixed v1/admission "$TMP/review.json"
fixed v1/promotions/evaluate "$REQUEST"
echo
echo "== HTTP floor at the same rate (GET /health)"
hey -z "${DURATION}s" -c 8 -q $((RATE / 8)) "$BASE/health" \
  | sed -n '/Requests\/sec/p;/Latency distribution/,/99%/p'
