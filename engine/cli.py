"""``zhida``: broker, worker, simulate, demo."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from engine.policy import Policy, PolicyError
from engine.settings import Settings


def _broker(args: argparse.Namespace) -> int:
    from engine.broker import EmbeddedBroker

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
    settings = Settings.from_env(
        bootstrap=args.bootstrap, http_port=args.http_port, topology=args.topology,
        policy=args.policy, catalogue=args.catalogue, data_dir=args.data_dir,
        partitions=args.partitions, log_level=args.log_level,
    )
    problem = _check_operator_files(settings)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    from engine import worker

    worker.run(settings)
    return 0


def _check_operator_files(settings: Settings) -> str | None:
    """Refuse bad operator files before starting, with one line naming the file.

    A bad policy raises PolicyError (``main`` prints it); a bad topology or catalogue is
    reported here. Each loads in milliseconds; the worker loads them again for real.
    """
    from engine import catalogue, topology

    Policy.load(settings.policy)
    path = settings.topology or topology.DATA
    try:
        units = topology.Topology.load(path)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"topology file {path}: {_file_problem(e)}"
    path = settings.catalogue or catalogue.DATA
    try:
        catalogue.Catalogue.load(path).check_owners(units)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"catalogue file {path}: {_file_problem(e)}"
    return None


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
    from engine.sim import cli as sim_cli

    return sim_cli.main(args)


def _demo(args: argparse.Namespace) -> int:
    from engine import demo

    return demo.main(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zhida", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("broker", help="run the embedded Kafka-compatible broker")
    b.add_argument("--port", type=int, default=9092)
    b.add_argument("--host", default="127.0.0.1")
    b.set_defaults(func=_broker)

    w = sub.add_parser("worker", help="run the engine (ZHIDA_BOOTSTRAP or --bootstrap)")
    w.add_argument("--bootstrap", help="Kafka bootstrap servers, comma-separated")
    w.add_argument("--topology", type=Path)
    w.add_argument("--policy", type=Path)
    w.add_argument("--catalogue", type=Path)
    w.add_argument("--http-port", type=int)
    w.add_argument("--data-dir", type=Path)
    w.add_argument("--partitions", type=int)
    w.add_argument("--log-level")
    w.set_defaults(func=_worker)

    s = sub.add_parser("simulate", help="synthetic complaints, alarms, district centres, citizens")
    _simulation_flags(s)
    s.add_argument("--bootstrap", default=None)
    s.set_defaults(func=_simulate)

    d = sub.add_parser("demo", help="broker + worker + simulator, then a summary")
    _simulation_flags(d, speed=600.0)  # a simulated working day in minutes
    d.add_argument("--http-port", type=int, default=None)
    d.set_defaults(func=_demo)
    return p


def _simulation_flags(p: argparse.ArgumentParser, speed: float = 60.0) -> None:
    p.add_argument("--rate", type=float, default=20.0, help="new complaints+alarms per second")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of new input")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--drain", type=float, default=20.0,
                   help="seconds to let open cases finish after the input stops")
    p.add_argument("--speed", type=float, default=speed,
                   help="simulated seconds per real second for unit and citizen delays")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PolicyError as e:  # a bad --policy file: one line, no traceback
        print(e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
