#!/usr/bin/env bash
# promo-policy against OPA (issue 19): the shipped bundle's `promo.decision` over the
# baseline request's exact policy input, on regorus's register VM (as the pipeline runs
# it) and on OPA's Go engine in process through the PyPI bindings, alternating ROUNDS
# times in one run. OPA's figure has the bridge's per-call cost (a trivial rule over the
# same input) subtracted; both exclude turning the input into the engine's value. The
# OPA side checks that its decision document is identical to promo-policy's.
#
#   benches/opa-compare.sh [ROUNDS]      # default 2
#
# The wheel (opa-golib-python-bindings 0.4.4) declares Python >= 3.14 but runs on older
# 3.x, so it is downloaded for 3.14 and installed with --ignore-requires-python into
# target/opa-bench-venv (see NOTES.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
VENV=target/opa-bench-venv
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" download -q --no-deps --only-binary=:all: --python-version 3.14 \
    -d "$TMP/wheel" opa-golib-python-bindings==0.4.4
  "$VENV/bin/pip" install -q --ignore-requires-python "$TMP"/wheel/*.whl
fi
cargo build --release --locked --example opa_side_by_side
echo "load before: $(cat /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  target/release/examples/opa_side_by_side "$TMP/dump.json" 2000
  "$VENV/bin/python" benches/opa_compare.py "$TMP/dump.json" 300
done
echo "load after: $(cat /proc/loadavg)"
