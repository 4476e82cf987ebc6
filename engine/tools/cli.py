"""``zhida``: run the engine (broker, worker, simulate, demo) and look after it (case, tail,
deadletters, lag, replay, precedents).

Failures an operator can cause end in one line on stderr and an exit code, never a
traceback: 2 for a bad flag, setting or operator file, or brokers that cannot be reached
within ``--connect-timeout``; 1 for what was asked and is not there (an unknown case, no
such dead letter); 130 for Ctrl-C, at any point.

Imports stay inside the functions: a Ctrl-C while Python is still importing faust would
otherwise end in a traceback, and ``zhida --help`` stays quick. Only the exit codes are
imported at once, from engine/tools/ops/common.py (no Kafka client there). The operator
commands' work is in engine/tools/ops/, one module a command (case, tail, deadletters, lag,
replay; precedents.py also defines its flags).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from engine.tools.ops.common import EXIT_INTERRUPTED, EXIT_USAGE

# ---- settings, defaults and help ----


def _default(name: str) -> Any:
    from engine.runtime.settings import Settings

    return Settings.model_fields[name].default


def _env_help(text: str, name: str, default: object = None) -> str:
    """``text (default D; env ZHIDA_NAME)``: every flag says where its value comes from."""
    shown = _default(name) if default is None else default
    return f"{text} (default {shown}; env ZHIDA_{name.upper()})".replace("%", "%%")


def _settings(**overrides: object) -> Any:
    """Settings from ``ZHIDA_*`` and the flags; a bad value is one line naming it."""
    from pydantic import ValidationError

    from engine.runtime.settings import Settings
    from engine.tools.ops.common import OpsError

    try:
        return Settings.from_env(**overrides)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        if not first["loc"]:  # a rule across settings: its message names them
            raise OpsError(f"settings: {first['msg'].removeprefix('Value error, ')}",
                           EXIT_USAGE) from None
        name = str(first["loc"][0])
        source = (f"--{name.replace('_', '-')}" if overrides.get(name) is not None
                  else f"ZHIDA_{name.upper()}")
        raise OpsError(f"setting {name} ({source}): {first['msg']}, "
                       f"got {first.get('input')!r}", EXIT_USAGE) from None


def _auth(settings: Any) -> dict[str, Any]:
    """The brokers' authentication arguments (SASL, docs/security.md) when the settings
    have them, so the operator tools reach a locked-down cluster as the worker does."""
    kwargs = getattr(settings, "client_kwargs", None)
    return dict(kwargs()) if callable(kwargs) else {}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("zhida")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _run(coro: Any) -> Any:
    import asyncio

    return asyncio.run(coro)


# ---- broker, worker, simulate, demo ----


def _broker(args: argparse.Namespace) -> int:
    from engine.tools.broker import EmbeddedBroker

    broker = EmbeddedBroker(port=args.port, host=args.host).start()
    print(f"embedded broker (Tansu) ready: bootstrap {broker.bootstrap}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            if broker.proc is None or broker.proc.poll() is not None:
                print("broker exited", file=sys.stderr)
                return 1
    finally:
        broker.stop()
        print("broker stopped", flush=True)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from engine.tools.ops.brokers import check_broker

    settings = _settings(
        bootstrap=args.bootstrap, http_port=args.http_port, topology=args.topology,
        policy=args.policy, catalogue=args.catalogue, data_dir=args.data_dir,
        partitions=args.partitions, log_level=args.log_level, keys=args.keys,
        connect_timeout=args.connect_timeout, standby_replicas=args.standby_replicas,
    )
    problem = _check_operator_files(settings)
    if problem:
        print(problem, file=sys.stderr)
        return EXIT_USAGE
    _run(check_broker(settings.bootstrap, settings.connect_timeout, _auth(settings)))
    from engine.runtime import worker

    worker.run(settings)  # faust stops on SIGINT/SIGTERM by itself, gracefully (exit 0)
    return 0


def _check_operator_files(settings: Any) -> str | None:
    """Refuse bad operator files before starting, with one line naming the file and field.

    A bad policy raises PolicyError (``main`` prints it); a bad key set (``--keys``) is
    checked here too, before the brokers are. The topology's units are plain
    dataclasses that take any value, so their fields are checked here against the
    dataclass's types: a code given as a number would otherwise start a worker that fails
    on its first message. Each file loads in milliseconds; the worker loads them again.
    """
    from engine.data import catalogue, topology
    from engine.data.policy import Policy

    Policy.load(settings.policy)
    path = settings.topology or topology.DATA
    problem = _check_list_file(path, "units", topology.Unit)
    if problem:
        return f"topology file {path}: {problem}"
    try:
        units = topology.Topology.load(path)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"topology file {path}: {_file_problem(e)}"
    path = settings.catalogue or catalogue.DATA
    problem = _check_list_file(path, "categories", catalogue.Category)
    if problem:
        return f"catalogue file {path}: {problem}"
    try:
        catalogue.Catalogue.load(path).check_owners(units)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"catalogue file {path}: {_file_problem(e)}"
    if getattr(settings, "keys", None) is not None:  # the signed-messages key set
        from engine.runtime import signing

        try:
            signing.KeySet(settings.keys)
        except signing.KeysError as e:  # its own one line: "key set FILE: field: problem"
            return str(e)
    return None


def _check_list_file(path: Path, key: str, item: type) -> str | None:
    """A JSON object whose ``key`` is a list of ``item``: the first problem, located
    (``units[3].code``, with the entry's code when it has one), or None."""
    import dataclasses

    import orjson
    from pydantic import TypeAdapter, ValidationError

    try:
        data = orjson.loads(Path(path).read_bytes())
    except (OSError, ValueError) as e:
        return _file_problem(e)
    if not isinstance(data, dict):
        return f"expected a JSON object with {key!r}, got {_json_type(data)}"
    if key not in data:
        return f"missing key {key!r}"
    entries = data[key]
    if not isinstance(entries, list):
        return f"{key}: expected an array, got {_json_type(entries)}"
    known = [f.name for f in dataclasses.fields(item)] if dataclasses.is_dataclass(item) \
        else None  # a dataclass refuses unknown keys; the pydantic models ignore them
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            return f"{key}[{i}]: expected an object, got {_json_type(entry)}"
        unknown = sorted(set(entry) - set(known)) if known is not None else []
        if unknown:
            code = f" (code {entry['code']})" if isinstance(entry.get("code"), str) else ""
            return f"{key}[{i}]{code}.{unknown[0]}: unknown field (known: {', '.join(known)})"
    try:
        TypeAdapter(list[item]).validate_python(entries)  # type: ignore[valid-type]
    except ValidationError as e:
        errors = e.errors(include_url=False)
        loc = list(errors[0]["loc"])
        index = loc.pop(0) if loc and isinstance(loc[0], int) else None
        where = key if index is None else f"{key}[{index}]"
        code = entries[index].get("code") if index is not None else None
        if isinstance(code, str):
            where += f" (code {code})"
        field = ".".join(str(p) for p in loc)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        got = errors[0].get("input")
        shown = f", got {got!r}" if not isinstance(got, dict | list) else ""
        return f"{where}.{field}: {errors[0]['msg']}{shown}{more}"
    return None


def _json_type(v: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _file_problem(e: Exception) -> str:
    import json

    from pydantic import ValidationError

    if isinstance(e, FileNotFoundError):
        return "no such file"
    if isinstance(e, OSError):
        return f"cannot read: {e.strerror or e}"
    if isinstance(e, KeyError):
        return f"missing key {e}"
    if isinstance(e, json.JSONDecodeError):  # orjson's errors are these too
        return f"invalid JSON: {e}"
    if isinstance(e, ValidationError):
        errors = e.errors(include_url=False)
        where = ".".join(str(p) for p in errors[0]["loc"])
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"invalid {e.title}: {where}: {errors[0]['msg']}{more}"
    return " ".join(f"{e}".split()) or type(e).__name__


def _simulate(args: argparse.Namespace) -> int:
    from engine.tools.ops.brokers import check_broker
    from engine.tools.sim import cli as sim_cli

    settings = _settings(bootstrap=args.bootstrap, connect_timeout=args.connect_timeout)
    _run(check_broker(settings.bootstrap, settings.connect_timeout, _auth(settings)))
    args.bootstrap = settings.bootstrap
    return sim_cli.main(args)


def _demo(args: argparse.Namespace) -> int:
    from engine.tools import demo

    return demo.main(args)


# ---- operator tools (engine/tools/ops/: one module a command) ----


def _case(args: argparse.Namespace) -> int:
    import os

    from engine.tools.ops import case

    settings = _settings(connect_timeout=args.connect_timeout)
    url = args.url or os.environ.get(case.URL_ENV) or case.DEFAULT_URL
    data = case.fetch_case(url, args.case_id, settings.connect_timeout)
    if args.json:
        print(case.case_json(data))
        return 0
    names = _unit_names(settings)
    for line in case.case_lines(data, names):
        print(line)
    return 0


def _unit_names(settings: Any) -> Any:
    """Unit names from the topology in use (ZHIDA_TOPOLOGY), codes alone if it won't load."""
    from engine.data.topology import Topology

    try:
        return Topology.load(settings.topology).name
    except Exception:  # names are a nicety: a case still prints without them
        return None


def _tail(args: argparse.Namespace) -> int:
    from engine.data.topology import Topology
    from engine.tools.ops import tail
    from engine.tools.ops.common import OpsError, quiet_broken_pipe

    settings = _settings(bootstrap=args.bootstrap, connect_timeout=args.connect_timeout)
    try:
        districts = Topology.load(settings.topology).districts
    except Exception as e:
        raise OpsError(f"topology file {settings.topology}: {_file_problem(e)}",
                       EXIT_USAGE) from None
    topics = tail.resolve_topics(args.topic, settings.prefix, districts)
    opts = tail.TailOptions(units=set(args.unit or ()), cases=set(args.case or ()),
                            from_beginning=args.from_beginning, max_records=args.max,
                            pretty=args.pretty, meta=args.meta)
    try:
        _run(tail.tail(settings.bootstrap, topics, opts, settings.connect_timeout,
                       auth=_auth(settings)))
    except BrokenPipeError:
        quiet_broken_pipe()
    return 0


def _deadletters(args: argparse.Namespace) -> int:
    from engine.tools.ops import deadletters
    from engine.tools.ops.common import OpsError

    if args.fixed is not None and args.offset is None:
        raise OpsError("--fixed FILE needs --offset: the one dead letter it corrects",
                       EXIT_USAGE)
    settings = _settings(bootstrap=args.bootstrap, connect_timeout=args.connect_timeout)
    fixed = deadletters.read_fixed(args.fixed) if args.fixed is not None else None
    topic = settings.prefix + "deadletter"
    letters = _run(deadletters.read_letters(settings.bootstrap, topic,
                                            settings.connect_timeout, _auth(settings)))
    if args.resubmit is None and args.offset is None:
        for line in deadletters.letter_lines(letters, topic, args.show):
            print(line)
        return 0
    chosen = deadletters.select_letters(letters, reason=args.resubmit, offset=args.offset)
    done = _run(deadletters.resubmit(settings.bootstrap, chosen, settings.prefix,
                                     settings.connect_timeout, fixed=fixed,
                                     dry_run=args.dry_run, auth=_auth(settings)))
    for line in deadletters.resubmit_lines(done, chosen, args.dry_run, fixed is not None):
        print(line)
    return 0 if done.sent or not chosen else 1


def _lag(args: argparse.Namespace) -> int:
    from engine.tools.ops import lag

    settings = _settings(bootstrap=args.bootstrap, connect_timeout=args.connect_timeout,
                         app_id=args.group)
    rows, about = _run(lag.consumer_lag(settings.bootstrap, settings.app_id, settings.prefix,
                                        settings.connect_timeout, _auth(settings)))
    for line in lag.lag_lines(rows, settings.app_id, settings.bootstrap, about):
        print(line)
    return 0 if rows else 1


def _replay(args: argparse.Namespace) -> int:
    from engine.tools.ops import replay

    start, end = replay.dates(args.start, args.end)  # before anything is loaded
    settings = _settings(bootstrap=args.bootstrap, connect_timeout=args.connect_timeout)
    return replay.command(start, end, args.candidate, args.unit, args.json, settings,
                          _auth(settings), _file_problem)


# ---- the parser ----


def _bootstrap_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", metavar="HOST:PORT[,…]",
                   help=_env_help("Kafka bootstrap servers, comma-separated", "bootstrap"))


def _timeout_flag(p: argparse.ArgumentParser, what: str = "the brokers") -> None:
    p.add_argument("--connect-timeout", type=float, metavar="SECONDS",
                   help=_env_help(f"give up on {what} after this many seconds, with one "
                                  "line and exit code 2", "connect_timeout"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zhida", description="Zhida (智达): run the dispatch engine (broker, worker, "
        "simulate, demo), look after it (case, tail, deadletters, lag, replay, precedents).",
        epilog="Exit codes: 0 ok, 1 not found / nothing to do, 2 bad flag, setting or file, "
               "or brokers unreachable, 130 interrupted. `zhida COMMAND --help` for a "
               "command's flags.")
    p.add_argument("--version", action="version", version=f"zhida {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (Tansu)")
    b.add_argument("--port", type=int, default=9092, help="port to listen on (default 9092)")
    b.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1)")
    b.set_defaults(func=_broker)

    w = sub.add_parser("worker", help="run the engine", description=(
        "Run the engine. Every flag overrides its ZHIDA_* variable; docs/operations.md "
        "lists the settings without a flag."))
    _bootstrap_flag(w)
    w.add_argument("--topology", type=Path, metavar="FILE",
                   help=_env_help("the administrative tree, JSON", "topology",
                                  "the shipped engine/data/topology.json"))
    w.add_argument("--policy", type=Path, metavar="FILE",
                   help=_env_help("the SLA policy, TOML (docs/policy.md)", "policy",
                                  "the shipped engine/data/policy.toml"))
    w.add_argument("--catalogue", type=Path, metavar="FILE",
                   help=_env_help("categories and sensor kinds, JSON", "catalogue",
                                  "the shipped engine/data/catalogue.json"))
    w.add_argument("--keys", type=Path, metavar="FILE",
                   help=_env_help("the units' public keys (JWKS): every update and directive "
                                  "must then be signed (docs/security.md)", "keys",
                                  "none: nothing is checked"))
    w.add_argument("--http-port", type=int, metavar="PORT",
                   help=_env_help("HTTP port of /readyz, /metrics, /cases/…", "http_port"))
    w.add_argument("--data-dir", type=Path, metavar="DIR",
                   help=_env_help("local state directory", "data_dir"))
    w.add_argument("--partitions", type=int, metavar="N",
                   help=_env_help("partitions of the topics the worker creates", "partitions"))
    w.add_argument("--standby-replicas", type=int, metavar="N",
                   help=_env_help("warm copies of each case-table partition kept on other "
                                  "workers, for failover (docs/operations.md)",
                                  "standby_replicas"))
    w.add_argument("--log-level", metavar="LEVEL",
                   help=_env_help("debug, info, warning or error", "log_level"))
    _timeout_flag(w)
    w.set_defaults(func=_worker)

    s = sub.add_parser("simulate", help="synthetic complaints, alarms, district centres, "
                       "citizens against a running worker (topic prefix: ZHIDA_PREFIX)")
    _simulation_flags(s)
    _bootstrap_flag(s)
    _timeout_flag(s)
    s.set_defaults(func=_simulate)

    d = sub.add_parser("demo", help="embedded broker + worker + simulator, then a summary")
    _simulation_flags(d, speed=600.0)  # a simulated working day in minutes
    d.add_argument("--http-port", type=int, default=None, metavar="PORT",
                   help="the worker's HTTP port (default: a free port)")
    d.add_argument("--no-keys", dest="keys", action="store_false",
                   help="run without signed messages (default: every unit gets a key pair, "
                        "the worker checks every update and directive, the simulator signs "
                        "them and forges a few that must be refused)")
    d.add_argument("--keep", action="store_true",
                   help="after the summary, print the board's address "
                        "(http://127.0.0.1:PORT/board) and keep the broker and the worker up "
                        "until Ctrl-C (default: stop them at once)")
    d.set_defaults(func=_demo)

    _operator_commands(sub)

    # another module may add its own subcommands (engine/tools/cli_keys.py: key management);
    # imported by name only when it is there, so this file works with or without it
    if importlib.util.find_spec("engine.tools.cli_keys") is not None:
        importlib.import_module("engine.tools.cli_keys").add_commands(sub)
    return p


def _operator_commands(sub: Any) -> None:
    prefix = _default("prefix")
    c = sub.add_parser("case", help="a case and its history, from the worker (masked)",
                       description="Print a case and its history as the worker answers "
                       "GET /cases/{id} (personal data masked). Exit 1 if unknown.")
    c.add_argument("case_id", metavar="CASE_ID", help="the case id (ZD…)")
    c.add_argument("--url", metavar="URL",
                   help="the worker's HTTP address (default http://127.0.0.1:6066; "
                        "env ZHIDA_URL)")
    c.add_argument("--json", action="store_true",
                   help="print the worker's JSON answer as it is (default: a readable view)")
    _timeout_flag(c, "the worker")
    c.set_defaults(func=_case)

    t = sub.add_parser("tail", help="follow a contract topic, decoded, filtered",
                       description="Follow a topic: one JSON body a line. Reads with no "
                       "consumer group, so the engine's offsets never move.")
    t.add_argument("topic", metavar="TOPIC",
                   help=f"case.events, directive.events, citizen.notifications, deadletter, "
                   f"intake.complaints, unit.updates, …, dispatch.<district code>, "
                   f"dispatch.city or dispatch (all); the prefix ({prefix}, env "
                   f"ZHIDA_PREFIX) may be given or left out")
    t.add_argument("--unit", action="append", metavar="CODE",
                   help="only records naming this unit (unit, target, actor, late_unit, "
                   "supervisor, issuer, assign_to, assist_units, location.unit); repeatable "
                   "(default: all)")
    t.add_argument("--case", action="append", metavar="ID",
                   help="only records of this case (case_id or key); repeatable (default: all)")
    t.add_argument("--from-beginning", action="store_true",
                   help="start at the oldest record (default: only new ones)")
    t.add_argument("--max", type=int, metavar="N",
                   help="stop after N matching records (default: follow until Ctrl-C)")
    t.add_argument("--pretty", action="store_true",
                   help="indented JSON under a '# topic[partition]@offset key=…' line "
                   "(default: one compact line each)")
    t.add_argument("--meta", action="store_true",
                   help="wrap each body with its topic, partition, offset, key, timestamp "
                   "and headers (default: the body alone)")
    _bootstrap_flag(t)
    _timeout_flag(t)
    t.set_defaults(func=_tail)

    dl = sub.add_parser("deadletters", help="dead letters by reason; resubmit after a fix",
                        description="List the dead letter topic grouped by reason, or put "
                        "dead letters back on their source topics with their original keys.")
    which = dl.add_mutually_exclusive_group()
    which.add_argument("--resubmit", metavar="REASON",
                       help="resubmit every dead letter of this reason (schema, "
                       "unknown_case, …), its original value as it was (default: list only)")
    which.add_argument("--offset", metavar="[P:]N",
                       help="resubmit the one dead letter at this offset of the dead letter "
                       "topic (P:N as listed; N alone if only one partition has it; "
                       "default: list only)")
    dl.add_argument("--fixed", metavar="FILE",
                    help="with --offset: resubmit this corrected JSON body instead of the "
                    "original (default: the original)")
    dl.add_argument("--dry-run", action="store_true",
                    help="say what would be resubmitted, send nothing")
    dl.add_argument("--show", type=int, default=3, metavar="N",
                    help="newest letters shown per reason (default %(default)s)")
    _bootstrap_flag(dl)
    _timeout_flag(dl)
    dl.set_defaults(func=_deadletters)

    lg = sub.add_parser("lag", help="consumer lag of the engine's group per topic/partition",
                        description="Committed offsets of the engine's consumer group "
                        "against each partition's end offset.")
    lg.add_argument("--group", metavar="GROUP",
                    help=_env_help("consumer group: the worker's app id", "app_id"))
    _bootstrap_flag(lg)
    _timeout_flag(lg)
    lg.set_defaults(func=_lag)

    r = sub.add_parser("replay", help="a period's cases decided again: live against a "
                       "candidate policy (what-if), per unit",
                       description="Decide the recorded inputs of the cases opened in [--from, "
                       "--to) (the city's days) again offline: without --policy exactly as "
                       "they ran (live = candidate), with --policy under that policy. Reads "
                       "without a consumer group, writes nothing (docs/replay.md). Run it "
                       "with the worker's ZHIDA_POLICY, ZHIDA_TOPOLOGY, ZHIDA_CATALOGUE, "
                       "ZHIDA_PREFIX and ZHIDA_APP_ID.")
    r.add_argument("--from", dest="start", required=True, metavar="DATE",
                   help="first day of the period, YYYY-MM-DD in the city's time zone "
                   "(required, no default)")
    r.add_argument("--to", dest="end", required=True, metavar="DATE",
                   help="the day after the period, YYYY-MM-DD (exclusive: --from D --to D+1 "
                   "is the day D); the replay's clock stops there or now, whichever is "
                   "earlier (required, no default)")
    r.add_argument("--policy", dest="candidate", type=Path, metavar="FILE",
                   help="the candidate SLA policy, TOML (docs/policy.md) (default: none, the "
                   "exact replay of the versions the cases ran under; ZHIDA_POLICY stays "
                   "the worker's file in force)")
    r.add_argument("--unit", metavar="CODE",
                   help="the unit whose subtree is shown, with its direct children "
                   "(default: the city centre)")
    r.add_argument("--json", type=Path, metavar="FILE",
                   help="also write the figures as JSON to FILE (default: none)")
    _bootstrap_flag(r)
    _timeout_flag(r)
    r.set_defaults(func=_replay)
    importlib.import_module("engine.tools.ops.precedents").add_commands(sub)  # its own module


def _simulation_flags(p: argparse.ArgumentParser, speed: float = 60.0) -> None:
    p.add_argument("--rate", type=float, default=20.0, metavar="N",
                   help="new complaints+alarms per second (default %(default)s)")
    p.add_argument("--duration", type=float, default=30.0, metavar="SECONDS",
                   help="seconds of new input (default %(default)s)")
    p.add_argument("--seed", type=int, default=12345,
                   help="random seed: the same seed, the same input (default %(default)s)")
    p.add_argument("--drain", type=float, default=20.0, metavar="SECONDS",
                   help="seconds to let open cases finish after the input stops "
                        "(default %(default)s)")
    p.add_argument("--speed", type=float, default=speed, metavar="X",
                   help="simulated seconds per real second for unit and citizen delays "
                        "(default %(default)s)")


# ---- main ----


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: no traceback either
        print("interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception as e:
        code = _one_line(e)
        if code is None:
            raise
        return code


def _one_line(e: Exception) -> int | None:
    """Print the expected failures as their one line; None for a bug (its traceback helps)."""
    from engine.data.policy import PolicyError
    from engine.tools.ops.common import OpsError

    if isinstance(e, OpsError):
        print(e, file=sys.stderr)
        return e.code
    if isinstance(e, PolicyError):  # a bad --policy file: one line naming file and key
        print(e, file=sys.stderr)
        return EXIT_USAGE
    return None


if __name__ == "__main__":
    sys.exit(main())
