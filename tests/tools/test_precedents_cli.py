"""``zhida precedents revoke`` without a broker (engine/tools/ops/precedents.py): finding the
ruling and its revocation among the insights, the group key derived from a ruling (checked
against the group the core really keeps the precedent on), the command it sends, and the
lines and exit codes, with the brokers faked. The real broker: someone else's end-to-end test.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest

from engine.core import World
from engine.core.model import Command, GroupRevoke
from engine.tools.cli import main, parser
from engine.tools.ops import precedents
from engine.tools.ops.common import EXIT_USAGE, OpsError
from schemas.outbound import RulingInsight
from tests.support.helpers import DISTRICT, OTHER_STREET, STREET, T0, update_cmd
from tests.support.insights import POINT, Town, complaint, disputed

POLICY = """
[policy]
merge_window = "PT2H"
merge_radius_m = 100
hotspot_min_reports = 5
hotspot_window = "P7D"
"""
HOSTILE = "\x1b]2;pwned\x07\x1b[2J\u202e" + "x" * 5000


def ruled_at_a_street(world: World) -> tuple[Town, RulingInsight]:
    t = Town(world)
    cid = disputed(t)
    t.case(update_cmd("assign", DISTRICT, cid, assign_to=OTHER_STREET))
    (r,) = t.insights("ruling")
    return t, r


def ruled_at_a_point(world: World) -> tuple[Town, RulingInsight]:
    """A point's complaint goes to its district; the district and then another district
    return it, so the city arbitrates and rules."""
    t = Town(world)
    cid = t.report(complaint(1, location=dict(POINT)))
    first = t.cases[cid].unit
    city = world.topology.city
    other = next(d for d in world.topology.children(city) if d != first)
    t.case(update_cmd("return", first, cid, reason="不归我们管"))
    t.case(update_cmd("assign", city, cid, assign_to=other))
    t.case(update_cmd("return", other, cid, reason="也不归我们"))
    t.case(update_cmd("assign", city, cid, assign_to=other))
    (r,) = t.insights("ruling")
    assert isinstance(r.place, dict) and r.unit == other and r.case_id == cid
    return t, r


def body(insight: Any) -> dict[str, Any]:
    """An insight as ``zhida.insights`` carries it, decoded."""
    return dict(orjson.loads(orjson.dumps(insight.model_dump(mode="json"))))


def revoked_body(ruling_id: str) -> dict[str, Any]:
    return {"insight_id": f"revoked/{ruling_id}", "kind": "revoked",
            "at": "2026-11-24T09:00:00Z", "ruling_id": ruling_id}


# ---- finding the ruling ----


def test_find_the_ruling_and_its_revocation(world: World) -> None:
    _, r = ruled_at_a_street(world)
    noise = [None, "text", {"_raw": "x"}, {"kind": "hotspot", "insight_id": "hotspot/1"},
             {"kind": "revoked", "insight_id": "revoked/other", "ruling_id": "other"}]
    found, revoked = precedents.find([*noise, body(r)], r.insight_id)
    assert found == r and revoked is None
    found, revoked = precedents.find([body(r), *noise, revoked_body(r.insight_id)],
                                     r.insight_id)
    assert found == r and revoked is not None and revoked["ruling_id"] == r.insight_id


def test_an_unknown_id_is_one_inert_line_and_exit_2() -> None:
    with pytest.raises(OpsError) as e:
        precedents.find([{"kind": "hotspot", "insight_id": "h"}], HOSTILE)
    text = str(e.value)
    assert e.value.code == EXIT_USAGE
    assert text.startswith("no ruling \\x1b]2;pwned\\x07\\x1b[2J\\u202e")
    assert "1 insight read" in text
    assert not any(c in text for c in "\x1b\x07\u202e\n") and len(text) < 400


def test_an_id_of_another_kind_says_so() -> None:
    with pytest.raises(OpsError) as e:
        precedents.find([{"kind": "dispute", "insight_id": "dispute/c/3"}], "dispute/c/3")
    assert e.value.code == EXIT_USAGE and "is a dispute insight, not a ruling" in str(e.value)


def test_a_malformed_ruling_is_refused(world: World) -> None:
    _, r = ruled_at_a_street(world)
    broken = {**body(r), "unit": None}
    with pytest.raises(OpsError) as e:
        precedents.find([broken], r.insight_id)
    assert e.value.code == EXIT_USAGE and "not a valid ruling" in str(e.value)


# ---- the group key ----


@pytest.mark.parametrize("ruled", [ruled_at_a_street, ruled_at_a_point])
def test_the_group_key_is_the_group_that_keeps_the_precedent(world: World, ruled: Any) -> None:
    t, r = ruled(world)
    found, _ = precedents.find([body(r)], r.insight_id)  # as read back from the topic
    group = precedents.group_for(world, found)
    assert group == t.cases[r.case_id].group
    assert r.insight_id in {p.insight_id for p in t.groups[group].precedents}


def test_the_command_sent_revokes_the_precedent_once(world: World) -> None:
    t, r = ruled_at_a_street(world)
    group = precedents.group_for(world, r)
    key, value = precedents.revoke_record(group, r.insight_id, T0 + timedelta(hours=3))
    cmd = Command.model_validate_json(value)
    assert key == group.encode() and cmd.aggregate == group
    assert cmd.body == GroupRevoke(ruling_id=r.insight_id) and cmd.at == T0 + timedelta(hours=3)
    t.group(cmd)
    t.group(cmd)
    (v,) = t.insights("revoked")
    assert v.ruling_id == r.insight_id
    later = t.report(complaint(2), at=T0 + timedelta(hours=5))
    assert all(e.precedent is None for e in t.events("dispatched") if e.case_id == later)


def test_rulings_without_a_precedent_to_find_are_exit_2(world: World) -> None:
    _, r = ruled_at_a_street(world)
    cases = {
        "has no place": r.model_copy(update={"place": None}),
        "is about an alarm": r.model_copy(update={"category": world.catalogue.codes("sensed")[0]}),
        "is in no unit": r.model_copy(update={"place": {"lat": 0.0, "lon": 0.0,
                                                        "radius_m": 100.0}}),
    }
    for why, ruling in cases.items():
        with pytest.raises(OpsError) as e:
            precedents.group_for(world, ruling)
        assert e.value.code == EXIT_USAGE and why in str(e.value), why


def test_a_unit_place_is_grouped_without_a_placer(world: World) -> None:
    _, r = ruled_at_a_street(world)
    assert r.place == STREET
    assert precedents.group_for(world, r).endswith(f"|{STREET}")


# ---- the command, brokers faked ----


class FakeBrokers:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, records: list[Any]) -> None:
        self.records = records
        self.read: list[str] = []
        self.sent: list[tuple[str, bytes, bytes]] = []
        monkeypatch.setattr(precedents, "read_insights", self.read_insights)
        monkeypatch.setattr(precedents, "send", self.send)
        for name in ("TOPOLOGY", "CATALOGUE", "POLICY", "PREFIX"):
            monkeypatch.delenv(f"ZHIDA_{name}", raising=False)

    async def read_insights(self, bootstrap: str, topic: str, timeout: float,
                            auth: Any = None) -> list[Any]:
        self.read.append(topic)
        return self.records

    async def send(self, bootstrap: str, topic: str, key: bytes, value: bytes,
                   timeout: float, auth: Any = None) -> None:
        self.sent.append((topic, key, value))


def test_revoke_sends_one_command_to_the_group(world: World, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    t, r = ruled_at_a_street(world)
    fake = FakeBrokers(monkeypatch, [body(r)])
    assert main(["precedents", "revoke", r.insight_id, "--prefix", "x."]) == 0
    assert fake.read == ["x.insights"]
    ((topic, key, value),) = fake.sent
    cmd = Command.model_validate_json(value)
    assert topic == "x.case.commands" and key.decode() == t.cases[r.case_id].group
    assert cmd.body == GroupRevoke(ruling_id=r.insight_id)
    out = capsys.readouterr().out.splitlines()
    assert out == [f"revoked {r.insight_id} (category road_damage, place {STREET}, unit "
                   f"{OTHER_STREET} {world.topology.name(OTHER_STREET)}): the worker publishes "
                   "a 'revoked' insight; routing follows the catalogue again"]


def test_revoke_of_a_revoked_precedent_sends_nothing(
        world: World, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _, r = ruled_at_a_street(world)
    fake = FakeBrokers(monkeypatch, [body(r), revoked_body(r.insight_id)])
    assert main(["precedents", "revoke", r.insight_id]) == 0
    assert fake.sent == []
    (line,) = capsys.readouterr().out.splitlines()
    assert line == (f"{r.insight_id} was already revoked at 2026-11-24T09:00:00Z "
                    f"(revoked/{r.insight_id}): nothing sent")


def test_revoke_of_an_unknown_id_is_one_line_and_exit_2(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeBrokers(monkeypatch, [])
    assert main(["precedents", "revoke", HOSTILE]) == EXIT_USAGE
    assert fake.sent == []
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "\x1b" not in err
    assert err.startswith("no ruling \\x1b]2;pwned") and "0 insights read" in err


def test_every_revoke_flag_says_its_default_and_variable() -> None:
    from engine.runtime.settings import Settings

    sub = next(a for a in parser()._actions if a.dest == "command")
    group = sub.choices["precedents"]  # type: ignore[index]
    revoke = next(a for a in group._actions if a.dest == "precedents_command").choices["revoke"]
    flags = [a for a in revoke._actions if a.option_strings and a.dest != "help"]
    assert {a.dest for a in flags} >= {"bootstrap", "prefix", "topology", "catalogue",
                                       "policy", "connect_timeout"}
    for a in flags:
        assert "default" in (a.help or ""), a.dest
        if a.dest in Settings.model_fields:
            assert f"ZHIDA_{a.dest.upper()}" in (a.help or ""), a.dest


def test_unreachable_brokers_are_one_line_and_exit_2(
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["precedents", "revoke", "ruling/x", "--bootstrap", "127.0.0.1:1",
                 "--connect-timeout", "1"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and err.count("\n") == 1
    assert err.startswith("cannot reach the Kafka brokers at 127.0.0.1:1")
