#!/bin/sh
# End-to-end figures for `eval --batch` on the release binary (BENCHMARKS.md):
#   scaling: --jobs 1 and --jobs 2 on the same generated workload, interleaved, R rounds;
#   memory:  peak RSS (/usr/bin/time -v) at SMALL and LARGE requests.
# Usage: benches/batch.sh [scaling|memory|all]   (env: N, R, SMALL, LARGE, WORK)
set -eu
cd "$(dirname "$0")/.."
N=${N:-4000}
R=${R:-5}
SMALL=${SMALL:-20000}
LARGE=${LARGE:-200000}
WORK=${WORK:-/tmp/promo-batch-bench}
AT=2026-11-26T18:00:00Z
BIN=target/release/promo-policy
GEN=target/release/examples/gen_workload
mkdir -p "$WORK"
cargo build --release --locked --bin promo-policy --example gen_workload >&2

gen() { # count -> file
    f="$WORK/w$1.jsonl"
    [ -s "$f" ] || "$GEN" --count "$1" --seed 1 --out "$f" 2>/dev/null
    echo "$f"
}

# One run: prints "jobs wall_s user_s sys_s max_rss_kb decisions_per_s".
one() { # file jobs
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" \
        "$BIN" eval --batch "$1" --at "$AT" --jobs "$2" --out /dev/null \
        --summary-json "$WORK/summary.json" 2>/dev/null || [ $? -eq 1 ]
    rate=$(sed -n 's/.*"decisionsPerSecond": \([0-9.]*\).*/\1/p' "$WORK/summary.json")
    echo "$2 $(tail -n 1 "$WORK/time") $rate"
}

scaling() {
    f=$(gen "$N")
    echo "# scaling: $N requests, $R rounds, jobs 1 and 2 interleaved"
    echo "# jobs wall_s user_s sys_s max_rss_kb decisions_per_s"
    i=0
    while [ $i -lt "$R" ]; do
        one "$f" 1
        one "$f" 2
        i=$((i + 1))
    done | tee "$WORK/scaling.txt"
    awk '{ r[$1] = r[$1] " " $6; u[$1] = u[$1] " " $3 }
         END { for (j in r) print "# jobs " j " decisions/s:" r[j] "   user s:" u[j] }' "$WORK/scaling.txt"
}

memory() {
    echo "# memory: peak RSS at $SMALL and $LARGE requests (--jobs 2)"
    for n in "$SMALL" "$LARGE"; do
        f=$(gen "$n")
        /usr/bin/time -v "$BIN" eval --batch "$f" --at "$AT" --jobs 2 --out /dev/null \
            2>"$WORK/rss-$n.txt" || [ $? -eq 1 ]
        echo "$n requests: $(grep -E 'Maximum resident' "$WORK/rss-$n.txt" | sed 's/^[[:space:]]*//'); $(grep 'batch:' "$WORK/rss-$n.txt" | sed 's/.*batch: //')"
    done
}

case "${1:-all}" in
    scaling) scaling ;;
    memory) memory ;;
    all) scaling; memory ;;
    *) echo "usage: $0 [scaling|memory|all]" >&2; exit 2 ;;
esac
