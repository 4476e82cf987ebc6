"""Who and where the simulated city is busiest: shared by the generator and the recurring
problems (engine/tools/sim/recurring.py)."""

from __future__ import annotations

CENTRAL_DISTRICTS: tuple[str, ...] = (
    "500103", "500105", "500106", "500107", "500108", "500112", "500113",
)
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何罗高林谭冉向"
PHONE_PREFIXES = ("138", "139", "135", "136", "137", "150", "151", "152", "157", "158", "159",
                  "182", "187", "188", "130", "131", "132", "155", "156", "185", "186", "133",
                  "153", "180", "189", "177", "199")
