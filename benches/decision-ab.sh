#!/usr/bin/env bash
# One decision's cost at two commits, side by side in one run: builds the `decision`
# criterion bench at BASE (a git revision, in a temporary worktree) and in this working
# tree, then alternates them ROUNDS times, each from its own tree (its own policies and
# corpus). Prints criterion's [low median high] per bench and round; compare medians.
#
#   benches/decision-ab.sh BASE [ROUNDS] [FILTER]
#   benches/decision-ab.sh 413584b 3 'bare_regorus_vm$|pipeline_signed$'
#
# Run it on a quiet machine: builds or load beside it move both sides, not the ratio.
set -euo pipefail
base=${1:?usage: benches/decision-ab.sh BASE [ROUNDS] [FILTER]}
rounds=${2:-3}
filter=${3:-'bare_regorus_vm$|pipeline_signed$'}
root=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
git -C "$root" worktree add -q --detach "$work/base" "$base"
trap 'git -C "$root" worktree remove --force "$work/base"; rm -rf "$work"' EXIT
# One target directory: the dependencies are built once for both sides (set
# CARGO_TARGET_DIR to reuse a release build's).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/bench-ab}"
build() {
  (cd "$1" && cargo bench --locked --bench decision --no-run 2>&1) |
    sed -n 's/.*Executable benches\/decision.rs (\(.*\))/\1/p' | tail -1
}
cp "$(build "$work/base")" "$work/decision-base"
cp "$(build "$root")" "$work/decision-head"
for round in $(seq 1 "$rounds"); do
  for side in base head; do
    dir=$root
    [ "$side" = base ] && dir=$work/base
    (cd "$dir" && "$work/decision-$side" --bench --warm-up-time 2 --measurement-time 6 "$filter" 2>&1) |
      awk -v tag="round $round $side:" '/^decision\//{name=$1} /time:/{print tag, name, substr($0, index($0, "["))}'
  done
done
