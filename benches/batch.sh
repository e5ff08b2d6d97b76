#!/bin/sh
# End-to-end figures for `eval --batch` on the release binary (BENCHMARKS.md):
#   scaling: --jobs 1 and --jobs 2 on the same generated workload, interleaved, R rounds;
#   memory:  peak RSS (/usr/bin/time -v) at SMALL and LARGE requests;
#   audit:   --audit off and on (a fresh SQLite log per run; and on with --audit-no-request)
#            on the same workload, --jobs 2, interleaved, R rounds.
# Usage: benches/batch.sh [scaling|memory|audit|all]   (env: N, R, SMALL, LARGE, WORK, BUILD)
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
# BUILD=0 reuses the binaries already built (e.g. while others hold the build lock).
[ "${BUILD:-1}" = 0 ] || cargo build --release --locked --bin promo-policy --example gen_workload >&2

gen() { # count -> file
    f="$WORK/w$1.jsonl"
    [ -s "$f" ] || "$GEN" --count "$1" --seed 1 --out "$f" 2>/dev/null
    echo "$f"
}

# One timed run: prints "wall_s user_s sys_s max_rss_kb decisions_per_s".
timed() { # file jobs [extra eval flags...]
    f=$1 jobs=$2
    shift 2
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" \
        "$BIN" eval --batch "$f" --at "$AT" --jobs "$jobs" --out /dev/null "$@" \
        --summary-json "$WORK/summary.json" 2>/dev/null || [ $? -eq 1 ]
    rate=$(sed -n 's/.*"decisionsPerSecond": \([0-9.]*\).*/\1/p' "$WORK/summary.json")
    echo "$(tail -n 1 "$WORK/time") $rate"
}

# One run: prints "jobs wall_s user_s sys_s max_rss_kb decisions_per_s".
one() { # file jobs
    echo "$2 $(timed "$1" "$2")"
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

# One run with the audit log in mode $2 (off, on, norequest): "mode wall_s user_s sys_s
# max_rss_kb decisions_per_s log_bytes".
one_audit() { # file mode
    rm -f "$WORK/audit.db" "$WORK/audit.db-wal" "$WORK/audit.db-shm"
    case "$2" in
        off) run=$(timed "$1" 2) ;;
        on) run=$(timed "$1" 2 --audit "$WORK/audit.db") ;;
        norequest) run=$(timed "$1" 2 --audit "$WORK/audit.db" --audit-no-request) ;;
    esac
    size=0
    [ "$2" = off ] || size=$(cat "$WORK/audit.db" "$WORK/audit.db-wal" 2>/dev/null | wc -c)
    echo "$2 $run $size"
}

audit() { # file mode
    rm -f "$WORK/audit.db" "$WORK/audit.db-wal" "$WORK/audit.db-shm"
    case "$2" in
        off) extra="" ;;
        on) extra="--audit $WORK/audit.db" ;;
        norequest) extra="--audit $WORK/audit.db --audit-no-request" ;;
    esac
    # shellcheck disable=SC2086
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" \
        "$BIN" eval --batch "$1" --at "$AT" --jobs 2 --out /dev/null $extra \
        --summary-json "$WORK/summary.json" 2>/dev/null || [ $? -eq 1 ]
    rate=$(sed -n 's/.*"decisionsPerSecond": \([0-9.]*\).*/\1/p' "$WORK/summary.json")
    size=0
    [ "$2" = off ] || size=$(cat "$WORK/audit.db" "$WORK/audit.db-wal" 2>/dev/null | wc -c)
    echo "$2 $(tail -n 1 "$WORK/time") $rate $size"
}

audit() {
    f=$(gen "$N")
    echo "# audit: $N requests, $R rounds, --jobs 2, off / on / on --audit-no-request interleaved"
    echo "# mode wall_s user_s sys_s max_rss_kb decisions_per_s log_bytes"
    i=0
    while [ $i -lt "$R" ]; do
        one_audit "$f" off
        one_audit "$f" on
        one_audit "$f" norequest
        i=$((i + 1))
    done | tee "$WORK/audit.txt"
    # Medians per mode, and each mode's median over off's.
    for m in off on norequest; do
        awk -v m="$m" '$1 == m { print $6 }' "$WORK/audit.txt" | sort -n |
            awk -v m="$m" '{ v[NR] = $1 } END { print m, (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
    done > "$WORK/audit-medians.txt"
    awk 'NR == 1 { off = $2 } { printf "# %s median decisions/s: %.1f (%.3f x off)\n", $1, $2, $2 / off }' \
        "$WORK/audit-medians.txt"
}

case "${1:-all}" in
    scaling) scaling ;;
    memory) memory ;;
    audit) audit ;;
    all) scaling; memory; audit ;;
    *) echo "usage: $0 [scaling|memory|audit|all]" >&2; exit 2 ;;
esac
