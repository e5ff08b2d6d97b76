"""The OPA half of benches/opa-compare.sh: OPA's Go engine, in process through the PyPI
bindings (opa-golib-python-bindings), evaluates the dump written by
`examples/opa_side_by_side.rs` (same modules, data and input), checks its decision is the
one promo-policy made, and prints its median with the bridge's own cost subtracted.

    python opa_compare.py DUMP.json [RUNS]
"""

import json
import statistics
import sys
import time

from opa_bindings import OpaEngine


def median_us(fn, runs):
    times = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - started)
    return statistics.median(times) / 1000.0


def main():
    dump = json.load(open(sys.argv[1]))
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    engine = OpaEngine()
    for path, text in sorted(dump["modules"].items()):
        engine.add_policy(path, text)
    engine.add_policy("bridge_floor.rego", "package bridge_floor\n\nx := 1\n")
    engine.add_data(dump["data"], "")
    inp = dump["input"]
    got = engine.eval_document("promo.decision", inp)
    if got != dump["result"]:
        print("OPA's decision differs from promo-policy's:", file=sys.stderr)
        print(json.dumps(got, indent=1, sort_keys=True)[:4000], file=sys.stderr)
        print(json.dumps(dump["result"], indent=1, sort_keys=True)[:4000], file=sys.stderr)
        sys.exit(1)
    for _ in range(20):
        engine.eval_document("promo.decision", inp)
    whole = median_us(lambda: engine.eval_document("promo.decision", inp), runs)
    floor = median_us(lambda: engine.eval_document("bridge_floor.x", inp), runs)
    opa = whole - floor
    ours = dump["median_us"]
    print(f"OPA (Go, in process): median {whole:.1f} µs, bridge floor {floor:.1f} µs, "
          f"evaluation {opa:.1f} µs over {runs} runs; same decision")
    print(f"ratio OPA / promo-policy: {opa / ours:.1f}x")


if __name__ == "__main__":
    main()
