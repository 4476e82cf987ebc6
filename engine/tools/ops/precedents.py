"""``zhida precedents revoke ID``: end the precedent a ruling set (CONTRACT.md "Recurring
problems and disputes", docs/insights.md).

A precedent is state of the merge group of its place, on the writer of the group's partition
(engine/core/insights.py). This tool never touches that state: it reads ``zhida.insights``
from its start to its end as the run begins (no consumer group, nothing committed), finds
the ruling and any revocation of it, derives the group's key from the ruling's category and
place with the world the worker runs (``merge.group_of`` over a complaint at that place), and
writes one ``GroupRevoke`` command to ``zhida.case.commands`` keyed by the group, acks=all.
The group's writer then ends the precedent and publishes the ``revoked`` insight; the command
sent twice revokes once.

The pure parts (``find``, ``group_for``, ``revoke_record`` and the lines printed) take decoded
records and a ``World``: tests/tools/test_precedents_cli.py runs them without a broker.
Registered by engine/tools/cli.py (``add_commands``); what takes time to import (the core,
the Kafka client) is imported inside the functions, as cli.py does.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.tools.ops.common import EXIT_USAGE, OpsError, shown

if TYPE_CHECKING:
    from engine.core.world import World
    from schemas.outbound import RulingInsight


def add_commands(sub: Any) -> None:
    """``precedents revoke`` under the ``zhida`` sub-parsers."""
    from engine.tools.cli import _bootstrap_flag, _env_help, _timeout_flag

    p = sub.add_parser("precedents", help="end a ruling's precedent (revoke)",
                       description="Precedents: a ruling of a dispute routes later complaints "
                       "of its category at its place to the ruled unit (docs/insights.md); "
                       "GET /precedents lists them.")
    ps = p.add_subparsers(dest="precedents_command", required=True, metavar="COMMAND")
    r = ps.add_parser("revoke", help="end one precedent: routing follows the catalogue again",
                      description="Find the ruling ID on zhida.insights and send its place's "
                      "merge group the revocation; the worker publishes a 'revoked' insight. "
                      "Exit 0 when revoked or already revoked, 2 for an unknown ID. Run it "
                      "with the worker's ZHIDA_TOPOLOGY, ZHIDA_CATALOGUE and ZHIDA_PREFIX.")
    r.add_argument("ruling_id", metavar="ID",
                   help="the ruling's insight_id (ruling/…), as GET /precedents lists it")
    r.add_argument("--prefix", metavar="PREFIX",
                   help=_env_help("topic name prefix, as the worker's", "prefix"))
    r.add_argument("--topology", type=Path, metavar="FILE",
                   help=_env_help("the worker's administrative tree, JSON: it places the "
                                  "ruling's point", "topology",
                                  "the shipped engine/data/topology.json"))
    r.add_argument("--catalogue", type=Path, metavar="FILE",
                   help=_env_help("the worker's categories, JSON", "catalogue",
                                  "the shipped engine/data/catalogue.json"))
    r.add_argument("--policy", type=Path, metavar="FILE",
                   help=_env_help("the worker's policy, TOML (its border distance places "
                                  "points)", "policy", "the shipped engine/data/policy.toml"))
    _bootstrap_flag(r)
    _timeout_flag(r)
    r.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """``zhida precedents revoke ID``: the operator files first, then the brokers."""
    import asyncio

    from engine.tools.cli import _auth, _file_problem, _settings
    from topics import TopicNames

    settings = _settings(bootstrap=args.bootstrap, connect_timeout=args.connect_timeout,
                         prefix=args.prefix, topology=args.topology,
                         catalogue=args.catalogue, policy=args.policy)
    world = load(settings, _file_problem)
    names = TopicNames(settings.prefix)
    auth, timeout = _auth(settings), settings.connect_timeout
    records = asyncio.run(read_insights(settings.bootstrap, names.insights, timeout, auth))
    ruling, revoked = find(records, args.ruling_id, names.insights)
    if revoked is not None:
        print(already_line(ruling, revoked))
        return 0
    group = group_for(world, ruling)
    key, value = revoke_record(group, ruling.insight_id, datetime.now(UTC))
    asyncio.run(send(settings.bootstrap, names.case_commands, key, value, timeout, auth))
    print(revoked_line(ruling, world))
    return 0


def load(settings: Any, problem: Any = str) -> World:
    """The world the worker runs (a bad policy file raises ``PolicyError``: its own line)."""
    from engine.data.policy import PolicyError
    from engine.runtime.world import load_world

    def path(p: Path | None) -> str | None:
        return None if p is None else str(p)

    try:
        return load_world(path(settings.topology), path(settings.catalogue),
                          path(settings.policy))
    except PolicyError:
        raise
    except Exception as e:
        files = ", ".join(f"{name} {getattr(settings, name) or 'shipped'}"
                          for name in ("topology", "catalogue"))
        raise OpsError(f"precedents: the operator files ({files}): {problem(e)}",
                       EXIT_USAGE) from None


# ---- the pure parts ----


def find(records: Iterable[Any], ruling_id: str, topic: str = "zhida.insights"
         ) -> tuple[RulingInsight, dict[str, Any] | None]:
    """The ruling ``ruling_id`` among decoded insights, and the first ``revoked`` insight of
    it (None while it holds). No such ruling, or a record under that id that is no valid
    ruling: ``OpsError``, exit 2."""
    from pydantic import ValidationError

    from schemas.outbound import RulingInsight

    ruling: dict[str, Any] | None = None
    revoked: dict[str, Any] | None = None
    other: str | None = None
    count = 0
    for body in records:
        count += 1
        if not isinstance(body, dict):
            continue
        kind = body.get("kind")
        if body.get("insight_id") == ruling_id:
            if kind == "ruling":
                ruling = ruling or body
            else:
                other = other or str(kind)
        elif kind == "revoked" and body.get("ruling_id") == ruling_id and revoked is None:
            revoked = body
    if ruling is None:
        if other is not None:
            raise OpsError(f"{shown(ruling_id)} on {topic} is a {shown(other, 32)} insight, "
                           "not a ruling: revoke takes a ruling's insight_id "
                           "(GET /precedents lists them)", EXIT_USAGE)
        raise OpsError(f"no ruling {shown(ruling_id)} on {topic} ({count} insight"
                       f"{'s' if count != 1 else ''} read; GET /precedents lists the rulings)",
                       EXIT_USAGE)
    try:
        return RulingInsight.model_validate(ruling), revoked
    except ValidationError as e:
        raise OpsError(f"ruling {shown(ruling_id)} on {topic} is not a valid ruling "
                       f"({e.error_count()} problems): nothing sent", EXIT_USAGE) from None


def probe(ruling: RulingInsight) -> Any:
    """A complaint of the ruling's category at its place: what ``merge.group_of`` places
    (None for a ruling without a place, which set no precedent)."""
    from engine.core.model import OpenCase

    place = ruling.place
    if place is None:
        return None
    location = {"unit": place} if isinstance(place, str) \
        else {"lat": place["lat"], "lon": place["lon"]}
    return OpenCase(source="complaint", key=f"revoke:{ruling.insight_id}",
                    category=ruling.category, priority="normal", location=location,
                    summary="", reported_at=ruling.at)


def group_for(world: World, ruling: RulingInsight) -> str:
    """The key of the merge group that holds the ruling's precedent; ``OpsError`` (exit 2)
    when the ruling set none that can be found."""
    from engine.core import merge

    rid = shown(ruling.insight_id)
    report = probe(ruling)
    if report is None:
        raise OpsError(f"ruling {rid} has no place: it set no precedent", EXIT_USAGE)
    if world.catalogue.get(ruling.category, "complaint") is None \
            and world.catalogue.get(ruling.category, "sensed") is not None:
        raise OpsError(f"ruling {rid} is about an alarm ({shown(ruling.category, 64)}): "
                       "only complaints' rulings set precedents", EXIT_USAGE)
    group = merge.group_of(world, report)
    if group is None:
        raise OpsError(f"ruling {rid}: its place {place_text(ruling.place)} is in no unit "
                       "of this topology (is it the worker's ZHIDA_TOPOLOGY?)", EXIT_USAGE)
    return group


def revoke_record(group: str, ruling_id: str, at: datetime) -> tuple[bytes, bytes]:
    """Key and value of the ``GroupRevoke`` command on ``zhida.case.commands``."""
    from engine.core.model import Command, GroupRevoke
    from schemas.codec import encode

    cmd = Command(aggregate=group, at=at, body=GroupRevoke(ruling_id=ruling_id))
    return group.encode("utf-8"), encode(cmd)


def place_text(place: Any) -> str:
    """A unit code, or a point cluster as ``lat,lon (R m)``; inert."""
    if isinstance(place, dict):
        radius = place.get("radius_m")
        return shown(f"{place.get('lat')},{place.get('lon')}"
                     + (f" ({radius:g} m)" if isinstance(radius, int | float) else ""), 80)
    return shown(place if place is not None else "-", 64)


def revoked_line(ruling: RulingInsight, world: World | None = None) -> str:
    unit = shown(ruling.unit, 64)
    name = world.topology.name(ruling.unit) if world is not None else ruling.unit
    if name and name != ruling.unit:
        unit += f" {shown(name, 64)}"
    return (f"revoked {shown(ruling.insight_id)} (category {shown(ruling.category, 64)}, "
            f"place {place_text(ruling.place)}, unit {unit}): the worker publishes a "
            "'revoked' insight; routing follows the catalogue again")


def already_line(ruling: RulingInsight, revoked: dict[str, Any]) -> str:
    return (f"{shown(ruling.insight_id)} was already revoked at "
            f"{shown(revoked.get('at') or '?', 64)} ({shown(revoked.get('insight_id'))}): "
            "nothing sent")


# ---- the brokers ----


async def read_insights(bootstrap: str, topic: str, timeout: float, auth: Any = None
                        ) -> list[Any]:
    """Every insight's body up to the end offsets seen at the start; no topic, none."""
    from engine.tools.ops.deadletters import read_letters

    return [x.body for x in await read_letters(bootstrap, topic, timeout, auth,
                                               missing_ok=True)]


async def send(bootstrap: str, topic: str, key: bytes, value: bytes, timeout: float,
               auth: Any = None) -> None:
    """One record, acks=all, waited for; a refusal or a timeout is one line, exit 2."""
    from aiokafka import AIOKafkaProducer

    from engine.tools.ops.brokers import check_broker, quiet_aiokafka

    await check_broker(bootstrap, timeout, auth)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                request_timeout_ms=int(max(timeout, 5.0) * 1000),
                                **(auth or {}))
    with quiet_aiokafka():
        await producer.start()
        try:
            await producer.send_and_wait(topic, value, key=key)
        except Exception as e:
            raise OpsError(f"the brokers at {bootstrap} did not take the revocation on "
                           f"{topic}: {e or type(e).__name__}; run it again (a second "
                           "revocation changes nothing)",
                           EXIT_USAGE) from None
        finally:
            await producer.stop()
