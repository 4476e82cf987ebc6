"""What the merge group costs the default path: intake → dispatch latency, merging off vs on.

    python -m bench.merge_cost [--rate 200] [--seconds 20] [--repeats 3]

With merging on (the default policy), every complaint first goes to its merge group (one more
pass through the single writer) before its case opens (engine/core/merge.py). One embedded
broker; per repeat two fresh workers, merging off and on (order alternating), each fed the same
complaints at a fixed rate; latency from producing a complaint to reading its dispatch order
(complaints that joined a neighbour's case have no order and are not in the percentiles).
Prints a markdown table; the figures go to docs/benchmarks.md by hand with the date.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench.harness import bench_parser, fresh_broker, progress, run_bench
from bench.run import Ctx, latency
from bench.workload import complaints
from engine.data.topology import Topology


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="zhida-merge-cost-"))
    on = workdir / "merge-on.toml"
    on.write_text('[policy]\nmerge_window = "PT2H"\n', encoding="utf-8")
    rows: dict[str, list[dict]] = {"off": [], "on": []}
    with fresh_broker(workdir) as broker:
        ctx = Ctx(broker.bootstrap, "mc", workdir, complaints(1, "mc", seed=7), Topology.load(),
                  30.0, "")
        for i in range(args.repeats):
            for label in (("off", "on") if i % 2 == 0 else ("on", "off")):
                r = await latency(ctx, args.rate, args.seconds,
                                  policy=on if label == "on" else None,
                                  label=f"m{label}{i}", stall=5.0)
                rows[label].append(r)
                progress(f"repeat {i + 1}, merging {label}: p50 {r.get('p50_ms')} ms, "
                         f"p99 {r.get('p99_ms')} ms over {r.get('received')} of {r['sent']}")
    print("| merging | p50 ms (median) | p99 ms (median) | orders / complaints |")
    print("|---|---:|---:|---|")
    for label, rs in rows.items():
        ok = [r for r in rs if "p50_ms" in r]
        print(f"| {label} | {statistics.median(r['p50_ms'] for r in ok):.1f} | "
              f"{statistics.median(r['p99_ms'] for r in ok):.1f} | "
              + ", ".join(f"{r.get('received')}/{r['sent']}" for r in rs) + " |")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = bench_parser("bench.merge_cost", __doc__)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--repeats", type=int, default=3)
    return run_bench(run, p.parse_args(argv))


if __name__ == "__main__":
    import sys

    sys.exit(main())
