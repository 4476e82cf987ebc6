"""Placement cost per report: points (point-in-polygon + border test) and addresses.

    python -m bench.placement [--samples 20000] [--border-m 200] [--seed 1]

Points: half spread uniformly over Chongqing's bounding box (about a third of those fall
outside the city), half around the main urban area (σ ≈ 10 km around 解放碑, where the
districts are small and the border test has most candidates). Addresses: the unit-test set
(tests/core/data/addresses.tsv) plus "<district><street>..." texts for every street, drawn at
random. Each call is timed alone (perf_counter_ns) on a warmed-up, cached index; one thread.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from engine.core.place import Placement
from engine.data.topology import Topology
from engine.runtime.world import address_matcher, geo_index

ADDRESSES = Path(__file__).resolve().parents[1] / "tests" / "core" / "data" / "addresses.tsv"
BBOX = (27.9, 32.4, 105.1, 110.4)  # lat min, lat max, lon min, lon max
CENTRE = (29.5578, 106.5770)


def _points(n: int, rng: random.Random) -> list[tuple[float, float]]:
    out = []
    for i in range(n):
        if i % 2:
            out.append((rng.uniform(BBOX[0], BBOX[1]), rng.uniform(BBOX[2], BBOX[3])))
        else:
            out.append((rng.gauss(CENTRE[0], 0.09), rng.gauss(CENTRE[1], 0.1)))
    return out


def _addresses(n: int, rng: random.Random) -> list[str]:
    topology = Topology.load()
    pool = [line.split("\t")[0] for line in ADDRESSES.read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#")]
    suffixes = ["12号附近井盖缺失", "菜市场门口占道经营", "小区停水两天了", "路口积水"]
    for u in topology.units.values():
        if u.level == "street" and u.parent:
            pool.append(topology.name(u.parent) + u.name + rng.choice(suffixes))
    return [rng.choice(pool) for _ in range(n)]


def _time(fn: Callable[[], Placement]) -> tuple[int, Placement]:
    t = time.perf_counter_ns()
    p = fn()
    return time.perf_counter_ns() - t, p


def _row(label: str, ns: list[int], placed: int) -> str:
    ns = sorted(ns)
    q = statistics.quantiles(ns, n=100, method="inclusive")
    return (f"| {label} | {len(ns):,} | {placed / len(ns):.0%} | {q[49] / 1000:.1f} | "
            f"{q[98] / 1000:.1f} | {ns[-1] / 1000:.0f} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--border-m", type=float, default=200.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)

    t = time.perf_counter()
    geo = geo_index()
    t_geo = time.perf_counter() - t
    t = time.perf_counter()
    matcher = address_matcher()
    t_addr = time.perf_counter() - t

    points = _points(args.samples, rng)
    texts = _addresses(args.samples, rng)
    for lat, lon in points[:500]:  # warm-up
        geo.place_point(lat, lon, args.border_m)
    for text in texts[:500]:
        matcher.place_address(text)

    pt_ns, pt_placed, boundary = [], 0, 0
    for lat, lon in points:
        ns, p = _time(lambda lat=lat, lon=lon: geo.place_point(lat, lon, args.border_m))
        pt_ns.append(ns)
        pt_placed += p.unit is not None
        boundary += p.boundary
    ad_ns, ad_placed = [], 0
    for text in texts:
        ns, p = _time(lambda text=text: matcher.place_address(text))
        ad_ns.append(ns)
        ad_placed += p.unit is not None

    print(f"index build: districts {t_geo * 1000:.0f} ms (incl. topology load), "
          f"address automaton {t_addr * 1000:.0f} ms; border {args.border_m:g} m; "
          f"{boundary:,} boundary points")
    print()
    print("| placement | samples | placed | p50 µs | p99 µs | max µs |")
    print("|---|---:|---:|---:|---:|---:|")
    print(_row("point (lat/lon)", pt_ns, pt_placed))
    print(_row("address", ad_ns, ad_placed))


if __name__ == "__main__":
    main()
