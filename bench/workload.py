"""The benchmark's input (valid contract complaints) and the passthrough's per-event work."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import orjson

from engine.data.catalogue import Catalogue
from engine.data.topology import Topology

CHANNELS = ("hotline", "app", "web", "grid", "media")
DESCRIPTIONS = (
    "路面塌陷，车辆通行困难，请尽快处理",
    "路灯不亮已经三天了",
    "小区门口垃圾堆积无人清运",
    "夜间施工噪音扰民",
    "人行道被违章停车占用",
)


def complaints(n: int, run: str, seed: int = 2026) -> list[tuple[bytes, bytes]]:
    """``n`` valid complaints as (key, JSON value): ids ``<run>-<i>``, real street codes,
    every complaint category of the catalogue, RFC 3339 times."""
    rnd = random.Random(seed)
    streets = Topology.load().streets
    categories = Catalogue.load().codes("complaint")
    t0 = datetime.now(UTC).replace(microsecond=0)
    out = []
    for i in range(n):
        cid = f"{run}-{i:07d}"
        body = {
            "complaint_id": cid,
            "channel": CHANNELS[i % len(CHANNELS)],
            "category": categories[i % len(categories)],
            "description": rnd.choice(DESCRIPTIONS),
            "location": {"unit": rnd.choice(streets)},
            "reported_at": (t0 - timedelta(seconds=n - i)).isoformat(),
        }
        out.append((cid.encode(), orjson.dumps(body)))
    return out


PAD = "x" * 40


def transform(value: bytes) -> bytes:
    """Decode a complaint and build a ~300-byte order-like message from it (same work in the
    raw aiokafka and the plain faust passthrough)."""
    c = orjson.loads(value)
    return orjson.dumps({
        "order_id": f"order/{c['complaint_id']}",
        "kind": "case",
        "target": c["location"]["unit"],
        "case_id": c["complaint_id"],
        "stage": "ack",
        "category": c["category"],
        "channel": c["channel"],
        "reported_at": c["reported_at"],
        "summary": c["description"][:20],
        "pad": PAD,
    })
