"""Cost of verifying ``zhida-signature`` (engine/runtime/signing.py) per message, on one core.

    python -m bench.signing [--messages 20000] [--units 300] [--rounds 3]

Builds ``--messages`` realistic unit updates (~300 bytes: ack, progress, resolve, return,
assign with Chinese notes, real unit codes from the topology), issues an Ed25519 key per acting
unit into a temporary JWKS with ``engine.tools.keys.issue`` and signs every body with its unit's
key,
then, single-threaded, times ``KeySet.verify`` per message (p50/p99/p99.9/max), the whole pass
as verifications per second (best of ``--rounds``, no per-call timer), and for comparison the
bare Ed25519 check of ``cryptography`` and the client's ``Signer.sign``. Prints a markdown
table. The engine's throughput with and without signatures is a separate measurement.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import cryptography
import orjson
from cryptography.hazmat.backends.openssl import backend as openssl

from engine.data.topology import Topology
from engine.runtime.signing import KeySet, Signer, b64url_decode, b64url_encode
from engine.tools import keys

NOTES = {
    "ack": "已签收，网格员正在赶往现场核实情况，将按时限要求安排处置并及时反馈结果。",
    "progress": "已派工作人员到场处置，现场已设置警示标志和围挡，预计今日内完成。",
    "resolve": "问题已处置完毕，现场积水已排除，井盖已复位，经电话回访群众表示认可。",
    "return": "经现场核实该点位不属于本街道管辖范围，请上级中心重新研判后派遣。",
    "assign": "经研判，转辖区街道办理，请按时签收，并在规定时限内反馈处置结果。",
}

SYNCED = "（工单已同步数字城管系统）"


def updates(n: int, units: int, seed: int = 2026) -> list[tuple[str, bytes]]:
    """(actor, body) pairs: ``n`` unit updates from ``units`` streets and districts."""
    rnd = random.Random(seed)
    topo = Topology.load()
    actors = rnd.sample(list(topo.streets), min(units, len(topo.streets)))
    t0 = datetime(2026, 6, 11, 8, 0, tzinfo=timezone(timedelta(hours=8)))
    out = []
    for i in range(n):
        actor = actors[i % len(actors)]
        action = rnd.choice(list(NOTES))
        body: dict[str, object] = {
            "update_id": f"O-20260611-{i:07d}:{action}", "actor": actor, "action": action,
            "at": (t0 + timedelta(seconds=i)).isoformat(),
            "case_id": f"C-20260611-{i:07d}", "note": NOTES[action] + SYNCED,
        }
        if action == "return":
            body["reason"] = "不属于本单位职责"
        if action == "assign":
            body["assign_to"] = rnd.choice(topo.streets)
        out.append((actor, orjson.dumps(body)))
    return out


def percentile(sorted_ns: list[int], q: float) -> float:
    """µs at quantile ``q`` (nearest rank) of sorted nanosecond samples."""
    i = min(len(sorted_ns) - 1, max(0, round(q * len(sorted_ns)) - 1))
    return sorted_ns[i] / 1000


def per_call(fn: Callable[[int], None], n: int) -> list[int]:
    """Nanoseconds of each ``fn(i)``, sorted."""
    clock = time.perf_counter_ns
    samples = [0] * n
    for i in range(n):
        t = clock()
        fn(i)
        samples[i] = clock() - t
    samples.sort()
    return samples


def throughput(fn: Callable[[int], None], n: int, rounds: int) -> float:
    """Calls per second over a whole pass, best of ``rounds``."""
    best = 0.0
    for _ in range(rounds):
        t = time.perf_counter()
        for i in range(n):
            fn(i)
        best = max(best, n / (time.perf_counter() - t))
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.signing", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=20_000, help="update bodies (default 20000)")
    p.add_argument("--units", type=int, default=300, help="acting units, one key each "
                                                          "(default 300)")
    p.add_argument("--rounds", type=int, default=3, help="throughput passes, best kept "
                                                         "(default 3)")
    args = p.parse_args(argv)

    msgs = updates(args.messages, args.units)
    sizes = sorted(len(b) for _, b in msgs)
    with tempfile.TemporaryDirectory(prefix="zhida-bench-signing-") as tmp:
        jwks = Path(tmp) / "jwks.json"
        paths = keys.issue(jwks, sorted({a for a, _ in msgs}), Path(tmp) / "private")
        signers = {s.unit: s for s in map(Signer.from_file, paths)}
        keyset = KeySet(jwks)
    headers = [signers[a].sign(b) for a, b in msgs]
    n = len(msgs)

    def verify(i: int) -> None:
        keyset.verify(msgs[i][1], headers[i], msgs[i][0])

    # the bare primitive: what any JOSE library would call, with the same signing input
    pubs = {kid: keyset.public_key(kid) for kid in keyset.kids()}
    prepared = []
    for (actor, body), header in zip(msgs, headers, strict=True):
        segment, _, sig = header.encode().split(b".")
        kid = f"{actor}#1"
        prepared.append((pubs[kid], b64url_decode(sig), segment + b"." + b64url_encode(body)))

    def bare(i: int) -> None:
        key, sig, data = prepared[i]
        key.verify(sig, data)

    def sign(i: int) -> None:
        signers[msgs[i][0]].sign(msgs[i][1])

    for i in range(min(n, 2000)):  # warm caches (parsed protected headers, allocator)
        verify(i)
    gc.collect()
    rows = []
    for name, fn in (("KeySet.verify (engine, accept)", verify),
                     ("Ed25519 verify alone (cryptography)", bare),
                     ("Signer.sign (client)", sign)):
        ns = per_call(fn, n)
        rows.append((name, percentile(ns, 0.5), percentile(ns, 0.99), percentile(ns, 0.999),
                     ns[-1] / 1000, throughput(fn, n, args.rounds)))

    cpu = _cpu_model()
    print(f"### Signature verification, one core ({n:,} updates, {len(signers)} unit keys)\n")
    print(f"Bodies {sizes[0]}–{sizes[-1]} B (median {sizes[len(sizes) // 2]} B); "
          f"{cpu}, {os.cpu_count()} CPUs; Python {platform.python_version()}, cryptography "
          f"{cryptography.__version__} ({openssl.openssl_version_text()}); "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC.\n")
    print("| what | p50 µs | p99 µs | p99.9 µs | max µs | per second (one core) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, p50, p99, p999, mx, per_s in rows:
        print(f"| {name} | {p50:.1f} | {p99:.1f} | {p999:.1f} | {mx:.0f} | {per_s:,.0f} |")
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
