"""Where a report is: a WGS-84 point or an address text → a unit code, or a triage reason.

Pure: built from data handed in (district polygons, the topology's names), no I/O, no clock.
``engine.runtime.world`` loads the data files and caches one of each. See docs/placement.md.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import ahocorasick
import numpy as np
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

Method = Literal["unit", "point", "address"]
CITY = "500000"


@dataclass(frozen=True, slots=True)
class Placement:
    """``unit`` None means triage, and ``reason`` says why in words an operator can act on."""

    unit: str | None
    boundary: bool = False
    reason: str | None = None
    method: Method = "unit"
    near: tuple[str, ...] = ()  # boundary: the districts within the border distance, home first

    @property
    def placed(self) -> bool:
        return self.unit is not None


# --- points ------------------------------------------------------------------------------

# Local equirectangular projection centred on the main urban area (解放碑 ≈ 29.56°N): metres per
# degree from the WGS-84 ellipsoid at LAT0. Exact there; east-west distances are off by the
# ratio cos(lat)/cos(LAT0): +2.9 % at 城口 (32.2°N), −2.4 % at 秀山's south tip (28.2°N), i.e.
# ≤ 6 m on a 200 m border distance, far below the polygons' own error (docs/placement.md).
LAT0, LON0 = 29.56, 106.55
_PHI = math.radians(LAT0)
KY = 111_132.92 - 559.82 * math.cos(2 * _PHI) + 1.175 * math.cos(4 * _PHI)
KX = 111_412.84 * math.cos(_PHI) - 93.5 * math.cos(3 * _PHI) + 0.118 * math.cos(5 * _PHI)
_NEAR_OUTSIDE_M = 20_000.0  # an outside point this close names the nearest district in its reason


def project(geom: BaseGeometry) -> BaseGeometry:
    """lon/lat degrees → local metres (x east, y north)."""
    return shapely.transform(
        geom, lambda a: np.column_stack(((a[:, 0] - LON0) * KX, (a[:, 1] - LAT0) * KY)))


def _short_repr(v: object) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _finite(v: object) -> float | None:
    """``v`` as a finite float, or None (bool, text, NaN, inf, an int too large)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _bad_coordinate(lat: object, lon: object) -> str | None:
    for label, v in (("lat", lat), ("lon", lon)):
        if _finite(v) is None:
            kind = "a finite number" if isinstance(v, int | float) and not isinstance(v, bool) \
                else "a number"
            return f"{label} is not {kind}: {_short_repr(v)}"
    flat, flon = float(lat), float(lon)  # type: ignore[arg-type]
    if not -90.0 <= flat <= 90.0:
        swapped = " (lat and lon swapped?)" if -90.0 <= flon <= 90.0 else ""
        return f"lat {flat:g} is outside [-90, 90]{swapped}"
    if not -180.0 <= flon <= 180.0:
        return f"lon {flon:g} is outside [-180, 180]"
    return None


class GeoIndex:
    """District polygons in local metres behind an STRtree: point → district, border test.

    One tree query (``dwithin`` the border distance) and one vectorised distance over the few
    candidates: tens of microseconds a point.
    """

    def __init__(
        self,
        districts: Mapping[str, BaseGeometry],
        parents: Mapping[str, str | None] | None = None,
        names: Mapping[str, str] | None = None,
        city: str = CITY,
    ) -> None:
        """``districts``: code → polygon in lon/lat degrees (WGS-84); ``parents`` for the
        lowest common ancestor (absent codes hang under ``city``); ``names`` for reasons."""
        if not districts:
            raise ValueError("GeoIndex needs at least one district polygon")
        self.codes: tuple[str, ...] = tuple(sorted(districts))
        self.geoms = np.array([project(districts[c]) for c in self.codes], dtype=object)
        for code, g in zip(self.codes, self.geoms, strict=True):
            if g.is_empty or not g.is_valid or g.geom_type not in ("Polygon", "MultiPolygon"):
                raise ValueError(f"district {code}: not a valid (multi)polygon")
        shapely.prepare(self.geoms)
        self.tree = shapely.STRtree(self.geoms)
        self.parents = dict(parents or {})
        self.names = dict(names or {})
        self.city = city

    @classmethod
    def from_geojson(
        cls, collection: Mapping[str, Any], parents: Mapping[str, str | None] | None = None,
        city: str = CITY,
    ) -> GeoIndex:
        """From a FeatureCollection whose features carry ``properties.code`` (and ``name``)."""
        districts: dict[str, BaseGeometry] = {}
        names: dict[str, str] = {}
        for f in collection["features"]:
            code = str(f["properties"]["code"])
            districts[code] = shape(f["geometry"])
            names[code] = str(f["properties"].get("name", code))
        return cls(districts, parents, names, city)

    def name(self, code: str) -> str:
        return self.names.get(code, code)

    def _chain(self, code: str) -> list[str]:
        """``code`` and its ancestors up to the city centre (a cycle or gap ends at the city)."""
        chain = [code]
        while chain[-1] != self.city:
            parent = self.parents.get(chain[-1]) or self.city
            if parent in chain:
                parent = self.city
            chain.append(parent)
        return chain

    def lowest_common_ancestor(self, codes: Iterable[str]) -> str:
        it = iter(codes)
        common = self._chain(next(it))
        for code in it:
            chain = set(self._chain(code))
            common = [c for c in common if c in chain]
        return common[0] if common else self.city

    def place_point(self, lat: float, lon: float, border_m: float = 0.0) -> Placement:
        """The district containing (lat, lon); closer than ``border_m`` to another district →
        their lowest common ancestor with ``boundary``; outside every district or invalid →
        ``unit=None`` with the reason. Never raises."""
        bad = _bad_coordinate(lat, lon)
        if bad is not None:
            return Placement(None, reason=bad, method="point")
        b = max(_finite(border_m) or 0.0, 0.0)
        lat, lon = float(lat), float(lon)
        pt = shapely.Point((lon - LON0) * KX, (lat - LAT0) * KY)
        if b > 0:
            idx = self.tree.query(pt, predicate="dwithin", distance=b)
        else:
            idx = self.tree.query(pt, predicate="intersects")
        if len(idx):
            dist = shapely.distance(self.geoms[idx], pt)
            hits = sorted((float(d), self.codes[i]) for i, d in zip(idx, dist, strict=True))
            inside = [c for d, c in hits if d == 0.0]
            if inside:
                home = inside[0]
                others = [c for d, c in hits if c != home and d < b]
                if not others:
                    return Placement(home, method="point")
                near = (home, *others)
                return Placement(self.lowest_common_ancestor(near), boundary=True,
                                 method="point", near=near,
                                 reason=f"within {b:g} m of the border of "
                                        + ", ".join(self.name(c) for c in near))
        nearest, dist = self.tree.query_nearest(pt, max_distance=_NEAR_OUTSIDE_M,
                                                return_distance=True, all_matches=False)
        where = ""
        if len(nearest) and dist[0] <= _NEAR_OUTSIDE_M:
            where = f", {dist[0]:.0f} m from {self.name(self.codes[nearest[0]])}"
        return Placement(None, method="point",
                         reason=f"({lat:.6f}, {lon:.6f}) is outside Chongqing{where}")


# --- addresses ---------------------------------------------------------------------------


class UnitLike(Protocol):
    code: str
    name: str
    level: str
    parent: str | None


@dataclass(frozen=True, slots=True)
class _Entry:
    code: str
    name: str  # the official name, for reasons
    level: str  # "district" | "street"
    district: str  # the district it lies in (itself for a district)
    full: bool  # the official name or an alias, not a short form
    weak: bool = False  # a short form that counts only beside its own district's name


_STREET_SUFFIXES = ("街道", "镇", "乡")
_ETHNIC = "(?:土家族|苗族|仡佬族|回族|彝族|藏族|壮族|蒙古族)+"
_AUTONOMOUS = re.compile(rf"^(.{{2,}}?){_ETHNIC}自治县$")
_ETHNIC_TOWNSHIP = re.compile(rf"^(.{{2,}}?){_ETHNIC}(乡|镇)$")
# A short form followed by one of these (an ordinal/direction in between allowed) is a road
# or a village named after the place, and such names are often far from it (中山四路 is in
# 渝中, 中山镇 in 江津; 石门村 can be anywhere).
_ROAD_AFTER = re.compile(r"[一二三四五六七八九十东南西北中正]?(?:路|大道|大街|巷|村)")
# Short forms that are everyday words, names of places elsewhere in China, or complaint
# vocabulary (早高峰, 黑水, 花台, 河边 ...) are weak: they count only when their district is
# named alongside (江津中山古镇); the full names (高峰街道 ...) always match.
_STOP_TEXT = """
七星 中山 中和 仁义 先锋 公平 和顺 太平 平安 康乐 文化 新华 新民 新生 永乐 民主 联合 群力
胜利 维新 青年 福禄 福寿 长生 天府 宜居 惠民 东城 南城 西城 城东 城南 城西 城厢 江南 江东
南门 礼让 大同 大有 大兴 复兴 永兴 兴隆 安居 长沙 桂林 太原 吉安 南平 新津 南溪 宝兴 名山
天元 太极 天文 海洋 土地 龙凤 凤凰 芙蓉 白云 黄金 温泉 水土 水田 太和 龙华 白马 金山 高峰
高楼 高升 大河 小河 大路 下路 石板 石子 花台 鱼池 水口 河边 江口 沿河 沿溪 桥头 坪山 新市
新桥 三江 三河 三角 龙门 冷水 火炉 黑水 黄水 黄沙 沙子 木耳 栗子 荔枝 海棠 菱角 鸳鸯 天生
大树 金鸡 丰盛 永安 永丰 长龙 打通 直升 临江 回龙 兴义 东阳 一品 同乐 新立 白石 沙坪
石桥 清水 长安 云雾 中山路 胜利路 南大街 新乡 龙岗
"""
STOP_SHORT = frozenset(_STOP_TEXT.split())
# Names people use that are not (or no longer) official names, mapped to the unit they mean.
ALIASES: Mapping[str, str] = {
    "江北机场": "500112",  # 重庆江北国际机场 lies in 渝北区, not 江北区
    "江北国际机场": "500112",
    "万盛区": "500110",  # merged into 綦江区 in 2011
    "万盛经开区": "500110",
    "万盛经济技术开发区": "500110",
    "双桥区": "500111",  # merged into 大足区 in 2011
    "双桥经开区": "500111",
}


def _district_short_forms(name: str) -> list[str]:
    m = _AUTONOMOUS.match(name)
    if m:  # 石柱土家族自治县 → 石柱, 石柱县
        return [m.group(1), m.group(1) + "县"]
    if name.endswith(("区", "县")) and len(name) >= 3:  # 渝中区 → 渝中; 忠县 has none
        return [name[:-1]]
    return []


def _street_forms(name: str) -> tuple[list[str], list[str]]:
    """(other full forms, short forms) of a town/street name: 解放碑街道 → ([], [解放碑]);
    地宝土家族乡 → ([地宝乡], [地宝])."""
    m = _ETHNIC_TOWNSHIP.match(name)
    if m:
        return [m.group(1) + m.group(2)], [m.group(1)]
    for suffix in _STREET_SUFFIXES:
        if name.endswith(suffix):
            short = name[: -len(suffix)]
            return [], [short] if len(short) >= 2 else []
    return [], []


def _surname_home(short: str) -> bool:
    """王家, 孙家 ...: 楼上王家 is a neighbour, not 王家街道."""
    return len(short) == 2 and short.endswith("家")


def _normalise(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


class AddressMatcher:
    """Official district/town/street names (and safe short forms) in one Aho-Corasick
    automaton; the most specific name found wins, shared names resolved by a district named
    alongside. Microseconds per address."""

    def __init__(self, units: Iterable[UnitLike], city: str = CITY,
                 aliases: Mapping[str, str] = ALIASES,
                 stop_short: Container[str] = STOP_SHORT) -> None:
        units = list(units)
        by_code = {u.code: u for u in units}
        self.city = city
        self.names = {u.code: u.name for u in units}
        patterns: dict[str, list[_Entry]] = {}

        def add(pattern: str, entry: _Entry) -> None:
            patterns.setdefault(pattern, []).append(entry)

        districts = [u for u in units if u.level == "district"]
        district_forms: set[str] = set()
        for u in districts:
            add(u.name, _Entry(u.code, u.name, "district", u.code, True))
            district_forms.add(u.name)
            for short in _district_short_forms(u.name):
                add(short, _Entry(u.code, u.name, "district", u.code, False))
                district_forms.add(short)
        for u in units:
            if u.level != "street" or u.parent is None:
                continue
            add(u.name, _Entry(u.code, u.name, "street", u.parent, True))
            fulls, shorts = _street_forms(u.name)
            for form in fulls:
                add(form, _Entry(u.code, u.name, "street", u.parent, True))
            # a district's own short form reads as the district (巫山 is the county, not 开州's
            # 巫山镇; 江北 the district, not 涪陵's 江北街道)
            for short in shorts:
                if short not in district_forms:
                    weak = short in stop_short or _surname_home(short)
                    add(short, _Entry(u.code, u.name, "street", u.parent, False, weak))
        for alias, code in aliases.items():
            u = by_code.get(code)
            if u is None or u.level not in ("district", "street"):
                raise ValueError(f"alias {alias} names unknown or unplaceable unit {code}")
            district = u.code if u.level == "district" else (u.parent or city)
            add(alias, _Entry(u.code, alias, u.level, district, True))

        self.automaton = ahocorasick.Automaton()
        for pattern, entries in patterns.items():
            self.automaton.add_word(pattern, (pattern, tuple(entries)))
        self.automaton.make_automaton()

    def _matches(self, text: str) -> list[tuple[int, str, tuple[_Entry, ...]]]:
        """Non-overlapping matches, longest first (解放碑街道 over 解放碑, 两路口 over 两路),
        weak short forms last."""
        found: list[tuple[int, int, str, tuple[_Entry, ...]]] = []
        for end, (pattern, entries) in self.automaton.iter(text):
            start = end - len(pattern) + 1
            if all(e.level == "street" and not e.full for e in entries) \
                    and _ROAD_AFTER.match(text, end + 1):
                continue
            found.append((start, end, pattern, entries))
        found.sort(key=lambda m: (all(e.weak for e in m[3]), m[0] - m[1], m[0]))
        taken: list[tuple[int, int]] = []
        out = []
        for start, end, pattern, entries in found:
            if any(start <= e and s <= end for s, e in taken):
                continue
            taken.append((start, end))
            out.append((start, pattern, entries))
        out.sort()
        return out

    def _label(self, e: _Entry) -> str:
        if e.level == "district":
            return e.name
        return f"{self.names.get(e.code, e.name)} ({self.names.get(e.district, e.district)})"

    def place_address(self, text: str) -> Placement:
        """The most specific official place named in ``text``, else ``unit=None`` with the
        reason (nothing found, or a shared name no district resolves). Never raises."""
        if not isinstance(text, str) or not text.strip():
            return Placement(None, reason="empty address", method="address")
        matches = self._matches(_normalise(text))
        named = {e.district for _, _, es in matches for e in es if e.level == "district"}
        streets: list[tuple[str, list[_Entry]]] = []
        for _, pattern, entries in matches:
            cands = [e for e in entries if e.level == "street"
                     and (not e.weak or e.district in named)]
            if named:  # a district named alongside decides; a street elsewhere is dropped
                cands = [e for e in cands if e.district in named]
            if cands:
                streets.append((pattern, cands))
        # a name that resolves alone tells the district of the shared ones beside it
        implied = {cs[0].district for _, cs in streets if len({e.code for e in cs}) == 1}
        if implied:
            streets = [(p, [e for e in cs if e.district in implied] or cs) for p, cs in streets]
        if any(e.full for _, cs in streets for e in cs):  # an official name beats a short form
            streets = [(p, cs) for p, cs in streets if any(e.full for e in cs)]
        units = {e.code: e for _, cs in streets for e in cs}
        if len(units) == 1:
            return Placement(next(iter(units)), method="address")
        if units:
            in_districts = {e.district for e in units.values()}
            if len(in_districts) == 1:  # two places in one district: the district is sure
                return Placement(in_districts.pop(), method="address")
            shared = [(p, cs) for p, cs in streets if len({e.code for e in cs}) > 1]
            if shared:
                p, cs = shared[0]
                return Placement(None, method="address", reason=(
                    f"'{p}' names {len(cs)} places: " + ", ".join(self._label(e) for e in cs)
                    + "; no district named to choose"))
            return Placement(None, method="address", reason=(
                "names places in several districts: "
                + ", ".join(self._label(e) for e in units.values())))
        if len(named) == 1:
            return Placement(named.pop(), method="address")
        if named:
            return Placement(None, method="address", reason=(
                "names several districts: " + ", ".join(self.names.get(c, c)
                                                        for c in sorted(named))))
        return Placement(None, method="address",
                         reason="no district, town or street name of Chongqing found")


# --- any location ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Placer:
    """Places a CONTRACT.md ``location``: ``{"unit"}``, ``{"lat", "lon"}`` or ``{"address"}``."""

    geo: GeoIndex
    addresses: AddressMatcher
    units: Container[str]

    def place(self, location: object, border_m: float = 0.0) -> Placement:
        if not isinstance(location, Mapping):
            return Placement(None, reason=f"location is not an object: {_short_repr(location)}")
        if "unit" in location:
            code = location["unit"]
            if isinstance(code, str) and code in self.units:
                return Placement(code, method="unit")
            return Placement(None, reason=f"unknown unit {_short_repr(code)}")
        if "lat" in location or "lon" in location:
            lat, lon = location.get("lat"), location.get("lon")
            return self.geo.place_point(lat, lon, border_m)  # type: ignore[arg-type]
        if "address" in location:
            return self.addresses.place_address(location["address"])
        return Placement(None, reason="location has none of unit, lat/lon, address")
