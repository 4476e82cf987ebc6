"""Synthetic inputs for the engine: hotline complaints and sensor alarms (CONTRACT.md "Topics in").

Pure and seedable: a ``Generator(seed)`` draws everything from one ``random.Random(seed)``, so
the same seed and the same sequence of calls (with the same ``now``) give the same messages,
ids included. Nothing here does I/O beyond loading the topology and catalogue files.

What it aims to look like:
- channels: mostly the 12345 hotline, then the 渝快办 app, grid workers, the web, the media;
- categories: the catalogue's complaint categories with a real-life skew (noise, sanitation,
  road damage far ahead of gas or city policy questions);
- places: the real streets of ``engine/data/topology.json``; the central urban districts
  (渝中, 江北, 沙坪坝, 九龙坡, 南岸, 渝北, 巴南) are busier, and 街道 busier than 镇/乡;
- about 5 % of complaints say where with coordinates or an address instead of a unit code
  (the engine triages those at the city centre);
- sensor alarms from stable sensor ids (one id per sensor place), with a severity mix and a
  plausible reading, plus now and then a storm: a burst of waterlogging alarms from many
  sensors of one district;
- recurring problems (engine/tools/sim/recurring.py): a few places reported again and again
  over the run, partly by the same callers, and the disputed streets' places among them; drawn
  from a random source of their own, so they come on top of the regular inputs of a seed.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal

from engine.core.ids import case_id_for
from engine.data.catalogue import Catalogue
from engine.data.topology import Topology
from engine.tools.sim.people import CENTRAL_DISTRICTS, PHONE_PREFIXES, SURNAMES

if TYPE_CHECKING:
    from engine.tools.sim.recurring import Place, Plan

CHONGQING = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=CHONGQING)

#: 渝中 江北 沙坪坝 九龙坡 南岸 渝北 巴南: the central urban districts, busier than the rest
CENTRAL_WEIGHT = 5.0  # a central street is this many times busier than an outer one
URBAN_STREET_WEIGHT = 2.0  # a 街道 (urban sub-district) against a 镇/乡 (town, township)

CHANNEL_WEIGHTS: dict[str, float] = {
    "hotline": 55, "app": 24, "grid": 10, "web": 8, "media": 3,
}
#: complaint categories by how often a city hotline hears them; unknown codes get 1
CATEGORY_WEIGHTS: dict[str, float] = {
    "noise": 18, "sanitation": 16, "road_damage": 14, "illegal_parking": 10,
    "garbage_overflow": 9, "street_vending": 7, "property_management": 7,
    "street_lighting": 6, "neighbourhood_dispute": 5, "illegal_construction": 3,
    "water_supply": 3, "drainage": 3, "public_transport": 3, "pollution": 2,
    "city_policy": 2, "gas_supply": 1,
}
KIND_WEIGHTS: dict[str, float] = {
    "waterlogging": 22, "smoke": 20, "traffic_congestion": 20, "manhole_cover": 15,
    "air_quality": 10, "bridge_structure": 6, "landslide_monitor": 7,
}
SEVERITY_WEIGHTS: dict[str, float] = {"info": 30, "warning": 50, "critical": 20}

#: sensors of each kind on one street: sensor ids are ``<prefix>-<street>-<nn>``
SENSORS_PER_STREET: dict[str, int] = {
    "waterlogging": 4, "manhole_cover": 6, "smoke": 8, "traffic_congestion": 3,
    "air_quality": 1, "bridge_structure": 2, "landslide_monitor": 2,
}
SENSOR_PREFIX: dict[str, str] = {
    "waterlogging": "WL", "manhole_cover": "MH", "smoke": "SM", "traffic_congestion": "TC",
    "air_quality": "AQ", "bridge_structure": "BR", "landslide_monitor": "LS",
}
#: kind -> (unit, reading range per severity)
READINGS: dict[str, tuple[str, dict[str, tuple[float, float]]]] = {
    "waterlogging": ("cm", {"info": (5, 15), "warning": (15, 30), "critical": (30, 80)}),
    "manhole_cover": ("deg", {"info": (3, 10), "warning": (10, 30), "critical": (30, 90)}),
    "smoke": ("%/m", {"info": (2, 5), "warning": (5, 10), "critical": (10, 25)}),
    "traffic_congestion": ("TPI", {"info": (4, 6), "warning": (6, 8), "critical": (8, 10)}),
    "air_quality": ("AQI", {"info": (101, 150), "warning": (151, 200), "critical": (201, 400)}),
    "bridge_structure": ("με", {"info": (200, 400), "warning": (400, 700),
                                "critical": (700, 1200)}),
    "landslide_monitor": ("mm", {"info": (5, 20), "warning": (20, 50), "critical": (50, 200)}),
}

STORM_CHANCE = 1 / 250  # per regular input: about one storm per 250 inputs
STORM_SIZE = (20, 60)
UNPLACED_SHARE = 0.05  # complaints located by coordinates or address instead of a unit
REPEAT_SHARE = 0.05  # complaints followed by 1-2 more callers about the same problem
COMPLAINT_SHARE = 0.8

ROADS = ("解放路", "中山路", "民族路", "新华路", "人民路", "建设路", "滨江路", "渝州路",
         "金开大道", "龙湖路", "学府大道", "杨家坪正街", "南坪正街", "观音桥步行街",
         "三峡广场", "红旗河沟", "大坪正街", "鱼洞大道", "石桥铺", "北城天街")
# main urban area bounding box, for complaints that only give coordinates
LAT_RANGE = (29.35, 29.75)
LON_RANGE = (106.35, 106.75)

TEMPLATES: dict[str, tuple[str, ...]] = {
    "noise": (
        "{place}{road}附近工地夜间{hour}点后仍在施工，噪声很大，影响休息。",
        "{place}某小区楼下广场舞音响声音过大，每天持续到晚上十点以后。",
        "{road}沿街商铺用高音喇叭招揽顾客，噪声扰民。",
    ),
    "sanitation": (
        "{place}{road}路段垃圾散落无人清扫，气味难闻。",
        "{place}公共厕所卫生状况差，长期无人保洁。",
        "{road}人行道上有大量油污和杂物，请安排清理。",
    ),
    "road_damage": (
        "{place}{road}路面出现坑洼，雨天积水，车辆和行人通行不便。",
        "{road}人行道地砖松动破损，老人容易绊倒。",
        "{place}{road}井盖周边路面下沉，存在安全隐患。",
    ),
    "street_lighting": (
        "{place}{road}一段路灯已经坏了{days}天，晚上一片漆黑。",
        "{place}小区门口路灯不亮，夜间出行不安全。",
    ),
    "garbage_overflow": (
        "{place}{road}垃圾桶已满溢{days}天未清运。",
        "{place}小区垃圾站垃圾堆积，清运不及时，蚊蝇滋生。",
    ),
    "illegal_construction": (
        "{place}某小区顶楼有住户私自搭建彩钢棚。",
        "{road}沿街有商户违规扩建门面，占用公共空间。",
    ),
    "illegal_parking": (
        "{place}{road}路边长期有车辆乱停乱放，堵塞消防通道。",
        "{road}人行道上停满车辆，行人只能走机动车道。",
    ),
    "street_vending": (
        "{place}{road}路口流动摊贩占道经营，影响交通。",
        "{road}夜市摊位占用人行道，油烟和垃圾较多。",
    ),
    "neighbourhood_dispute": (
        "{place}楼上邻居装修漏水到我家，协商未果，请求调解。",
        "{place}邻居长期在楼道堆放杂物，沟通无效。",
    ),
    "property_management": (
        "{place}某小区电梯故障{days}天未修，物业一直推诿。",
        "{place}小区物业乱收停车费，业主意见很大。",
    ),
    "water_supply": (
        "{place}{road}一带停水已经{hours}个小时，没有接到任何通知。",
        "{place}自来水发黄有异味，请尽快检测。",
    ),
    "drainage": (
        "{place}{road}下水道堵塞，污水外溢。",
        "{road}雨水篦子堵塞，一下雨就积水。",
    ),
    "gas_supply": (
        "{place}某小区楼道内闻到燃气味，请立即派人检查。",
        "{place}燃气压力不足，做饭火很小。",
    ),
    "pollution": (
        "{place}附近工厂排放刺鼻气体，晚上尤其明显。",
        "{road}附近河道有污水直排，水面发黑。",
    ),
    "public_transport": (
        "{road}公交站班次间隔太长，早高峰等车超过{minutes}分钟。",
        "轨道交通{line}号线{place}附近车站出口扶梯长期停运。",
    ),
    "city_policy": (
        "咨询重庆市住房公积金提取的最新政策。",
        "咨询全市积分落户政策的具体办理条件。",
        "咨询本市老年人乘坐公共交通的优惠政策。",
    ),
}
GENERIC_TEMPLATE = "{place}{road}附近有{name}问题，请尽快处理。"

Source = Literal["complaint", "sensed"]


@dataclass(frozen=True, slots=True)
class Input:
    """One message for an intake topic: ``topic`` is the ``TopicNames`` attribute."""

    source: Source
    key: str  # the Kafka key: complaint_id, or sensor_id for alarms
    value: dict[str, Any]
    storm: bool = False

    @property
    def topic(self) -> str:
        return "complaints" if self.source == "complaint" else "sensed"

    @property
    def idempotency_key(self) -> str:
        return self.value["complaint_id"] if self.source == "complaint" else self.value["event_id"]

    @property
    def case_id(self) -> str:
        """The engine's case id for this input (engine/core/ids.py), to match its orders."""
        return case_id_for(self.source, self.idempotency_key)

    @property
    def unit(self) -> str | None:
        loc = self.value.get("location") or {}
        return loc.get("unit")


class _Weighted:
    """``random.choices`` with precomputed cumulative weights (many thousands of draws)."""

    def __init__(self, items: Sequence[str], weights: Iterable[float]) -> None:
        self.items = list(items)
        self.cum = list(itertools.accumulate(weights))
        if not self.items or self.cum[-1] <= 0:
            raise ValueError("nothing to choose from")

    def pick(self, rng: random.Random) -> str:
        return self.items[bisect.bisect_right(self.cum, rng.random() * self.cum[-1])]


def street_weight(topology: Topology, street: str) -> float:
    w = CENTRAL_WEIGHT if topology.district_of(street) in CENTRAL_DISTRICTS else 1.0
    if topology.name(street).endswith("街道"):
        w *= URBAN_STREET_WEIGHT
    return w


class Generator:
    """Seeded source of complaints and alarms; ``tick(now)`` is the usual entry point."""

    def __init__(self, seed: int = 12345, topology: Topology | None = None,
                 catalogue: Catalogue | None = None, *, storm_chance: float = STORM_CHANCE,
                 complaint_share: float = COMPLAINT_SHARE,
                 unplaced_share: float = UNPLACED_SHARE,
                 repeat_share: float = REPEAT_SHARE, recurring: bool = True,
                 plan: Plan | None = None) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.topology = topology or Topology.load()
        self.catalogue = catalogue or Catalogue.load()
        self.storm_chance = storm_chance
        self.complaint_share = complaint_share
        self.unplaced_share = unplaced_share
        self.repeat_share = repeat_share
        topo = self.topology
        self.streets = _Weighted(topo.streets, (street_weight(topo, s) for s in topo.streets))
        districts = [d for d in topo.districts if topo.streets_of(d)]
        self.districts = _Weighted(
            districts, (sum(street_weight(topo, s) for s in topo.streets_of(d))
                        for d in districts))
        codes = sorted(self.catalogue.codes("complaint"))
        self.categories = _Weighted(codes, (CATEGORY_WEIGHTS.get(c, 1.0) for c in codes))
        kinds = sorted(self.catalogue.codes("sensed"))
        self.kinds = _Weighted(kinds, (KIND_WEIGHTS.get(k, 1.0) for k in kinds))
        self.has_waterlogging = "waterlogging" in kinds
        self.channels = _Weighted(list(CHANNEL_WEIGHTS), CHANNEL_WEIGHTS.values())
        self.severities = _Weighted(list(SEVERITY_WEIGHTS), SEVERITY_WEIGHTS.values())
        self._complaints = itertools.count(1)
        self._events = itertools.count(1)
        self._ticks = 0
        # recurring places (the recurring module draws its plan from this module's tables)
        from engine.tools.sim.recurring import Recurring, plan_for

        self.plan = plan or plan_for(seed, topo, self.catalogue)
        self.recurring = Recurring(self.plan) if recurring else None
        self._again = random.Random(f"recurring-complaints-{seed}")
        self._again_ids = itertools.count(1)

    # ---- the usual entry point ----

    def tick(self, now: datetime | None = None) -> list[Input]:
        """One regular input (a complaint ~80 %, else an alarm), sometimes followed by a storm."""
        now = now or T0 + timedelta(seconds=self._ticks)
        self._ticks += 1
        item = self.complaint(now) if self.rng.random() < self.complaint_share \
            else self.alarm(now)
        out = [item]
        if item.source == "complaint" and self.rng.random() < self.repeat_share:
            out.extend(self.repeats(item))  # 一事多诉: neighbours call about the same thing
        if self.has_waterlogging and self.rng.random() < self.storm_chance:
            out.extend(self.storm(now))
        again = self.recurring.due(self._ticks) if self.recurring is not None else None
        if again is not None:
            out.append(self.recurring_complaint(*again, now))
        return out

    # ---- complaints ----

    def repeats(self, first: Input) -> list[Input]:
        """One or two more callers about the problem ``first`` reported: same category and
        place, their own complaint id and contact."""
        out = []
        for _ in range(self.rng.randint(1, 2)):
            n = next(self._complaints)
            value = {**first.value, "complaint_id": f"SIM{self.seed}-C{n:07d}",
                     "channel": self.rng.choice(("hotline", "app")),
                     "description": first.value["description"] + "（又一位市民反映）"}
            citizen = self._citizen(value["channel"])
            if citizen is not None:
                value["citizen"] = citizen
            else:
                value.pop("citizen", None)
            out.append(Input("complaint", value["complaint_id"], value))
        return out

    def recurring_complaint(self, place: Place, n: int = 0, now: datetime | None = None
                            ) -> Input:
        """Report ``n`` (from 0) of a recurring place: often from one of its regular callers;
        a point place by coordinates within ``POINT_JITTER_M`` of its landmark."""
        from engine.tools.sim.recurring import POINT_JITTER_M, regular_caller

        rng, now = self._again, now or T0
        complaint_id = f"SIM{self.seed}-R{next(self._again_ids):07d}"
        channel = "hotline" if rng.random() < 0.7 else "app"
        location: dict[str, Any]
        if place.point is not None:
            lat, lon = place.point
            d, bearing = rng.uniform(0, POINT_JITTER_M), rng.uniform(0, 2 * math.pi)
            location = {"lat": round(lat + d * math.cos(bearing) / 111_320, 6),
                        "lon": round(lon + d * math.sin(bearing)
                                     / (111_320 * math.cos(math.radians(lat))), 6)}
        else:
            location = {"unit": place.unit}
        regular = regular_caller(place, n)
        citizen = ({"name": regular[0], "phone": regular[1]} if regular is not None
                   else self._citizen(channel, rng))
        lag = rng.uniform(20, 240) if channel == "hotline" else rng.uniform(1, 30)
        value: dict[str, Any] = {
            "complaint_id": complaint_id, "channel": channel, "category": place.category,
            "description": self._description(place.category, place.unit, rng, place.name),
            "location": location,
            "reported_at": (now - timedelta(seconds=lag)).isoformat(timespec="seconds"),
        }
        if citizen is not None:
            value["citizen"] = citizen
        return Input("complaint", complaint_id, value)

    def complaint(self, now: datetime | None = None) -> Input:
        rng = self.rng
        now = now or T0
        n = next(self._complaints)
        complaint_id = f"SIM{self.seed}-C{n:07d}"
        channel = self.channels.pick(rng)
        category = self.categories.pick(rng)
        street = self.streets.pick(rng)
        district = self.topology.district_of(street) or street
        lag = rng.uniform(20, 240) if channel == "hotline" else rng.uniform(1, 30)
        value: dict[str, Any] = {
            "complaint_id": complaint_id,
            "channel": channel,
            "category": category,
            "description": self._description(category, street),
            "location": self._complaint_location(street, district),
            "reported_at": (now - timedelta(seconds=lag)).isoformat(timespec="seconds"),
        }
        p = rng.random()
        if p < 0.08:
            value["priority"] = "urgent"
        elif p < 0.18:
            value["priority"] = "normal"
        citizen = self._citizen(channel)
        if citizen is not None:
            value["citizen"] = citizen
        return Input("complaint", complaint_id, value)

    def _complaint_location(self, street: str, district: str) -> dict[str, Any]:
        rng = self.rng
        if rng.random() >= self.unplaced_share:
            return {"unit": street}
        if rng.random() < 0.5:
            return {"lat": round(rng.uniform(*LAT_RANGE), 6),
                    "lon": round(rng.uniform(*LON_RANGE), 6)}
        # an address: half name the street or town as well, half only the district
        place = self.topology.name(district)
        if rng.random() < 0.5:
            place += self.topology.name(street)
        return {"address": f"重庆市{place}{rng.choice(ROADS)}{rng.randint(1, 300)}号附近"}

    def _description(self, category: str, street: str | None,
                     rng: random.Random | None = None, place: str | None = None) -> str:
        rng = rng or self.rng
        templates = TEMPLATES.get(category)
        template = rng.choice(templates) if templates else GENERIC_TEMPLATE
        known = self.catalogue.get(category, "complaint")
        return template.format(
            place=place or (self.topology.name(street) if street else ""),
            road=rng.choice(ROADS),
            hour=rng.choice(("十", "十一", "十二")), days=rng.randint(2, 15),
            hours=rng.randint(3, 30), minutes=rng.choice((20, 30, 40)),
            line=rng.choice((1, 2, 3, 5, 6, 9, 10)), name=known.name if known else category,
        )

    def _citizen(self, channel: str, rng: random.Random | None = None
                 ) -> dict[str, str] | None:
        rng = rng or self.rng
        if channel == "media" or (channel == "grid" and rng.random() < 0.5):
            return None
        name = rng.choice(SURNAMES) + rng.choice(("先生", "女士"))
        phone = rng.choice(PHONE_PREFIXES) + f"{rng.randrange(10**8):08d}"
        return {"name": name, "phone": phone}

    # ---- alarms ----

    def alarm(self, now: datetime | None = None, *, kind: str | None = None,
              street: str | None = None, sensor: int | None = None,
              severity: str | None = None, storm: bool = False) -> Input:
        rng = self.rng
        now = now or T0
        kind = kind or self.kinds.pick(rng)
        street = street or self.streets.pick(rng)
        if sensor is None:
            sensor = rng.randrange(SENSORS_PER_STREET.get(kind, 2))
        severity = severity or self.severities.pick(rng)
        n = next(self._events)
        event_id = f"SIM{self.seed}-E{n:07d}"
        sensor_id = sensor_id_for(kind, street, sensor)
        value: dict[str, Any] = {
            "event_id": event_id,
            "sensor_id": sensor_id,
            "kind": kind,
            "severity": severity,
            "location": {"unit": street},
            "observed_at": (now - timedelta(seconds=rng.uniform(0.5, 20))).isoformat(
                timespec="milliseconds"),
        }
        unit, ranges = READINGS.get(kind, ("", {}))
        if severity in ranges:
            low, high = ranges[severity]
            value["value"] = round(rng.uniform(low, high), 1)
            value["unit"] = unit
        return Input("sensed", sensor_id, value, storm=storm)

    def storm(self, now: datetime | None = None, *, district: str | None = None,
              size: int | None = None) -> list[Input]:
        """A burst of waterlogging alarms from many distinct sensors of one district."""
        rng = self.rng
        district = district or self.districts.pick(rng)
        per_street = SENSORS_PER_STREET["waterlogging"]
        slots = [(s, i) for s in self.topology.streets_of(district) for i in range(per_street)]
        size = min(size or rng.randint(*STORM_SIZE), len(slots))
        return [
            self.alarm(now, kind="waterlogging", street=street, sensor=i,
                       severity="critical" if rng.random() < 0.4 else "warning", storm=True)
            for street, i in rng.sample(slots, size)
        ]


def sensor_id_for(kind: str, street: str, index: int) -> str:
    """Stable per place: the same kind, street and index always name the same sensor."""
    prefix = SENSOR_PREFIX.get(kind, kind[:2].upper())
    return f"{prefix}-{street}-{index:02d}"
