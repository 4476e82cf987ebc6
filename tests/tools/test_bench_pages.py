"""Every benchmark page renders from a small recorded sample (issue 22).

A benchmark measures for minutes and renders its page last, so a broken template (a ``{id}``
that ``str.format`` takes for a field, an f-string without its ``f``) used to show only at the
end of a run, and lose it. Here each page is rendered from tests/tools/data/bench/<page>.json,
in the shape its ``render`` takes: no broker, nothing measured, nothing written under docs/.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench import (
    broker_fetch,
    capacity,
    cityday,
    directives,
    failover,
    profile,
    replay,
    report,
    scale,
    signed,
    storm,
    timer_index,
    timers,
)
from bench.run import Result, write_page

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
DATA = ROOT / "tests" / "tools" / "data" / "bench"
# A format field left in the text: {name}, {m[cores]}, {a[n]:,}, {x!r}. Not one: a path
# parameter (/directives/{id}), a label selector ({type="dispatched"}), JSON or TOML
# ({kind, stage, at}, {action: suspend, until: T}, {'4': 1200}).
PLACEHOLDER = re.compile(r"(?<!/)\{[A-Za-z_]\w*(\[[^\]\s]*\])*(\.\w+)*(![rsa])?(:[^{}\s]*)?\}")
# a module that writes a page, when another module renders it
RENDERED_BY = {"run": "report"}

Sample = dict[str, Any]


def _json(path: Path) -> Sample:
    """As ``--render-from`` reads a run's results.json (orjson: no NaN or Infinity)."""
    return orjson.loads(path.read_bytes())


def _dated(path: Path) -> Sample:
    """The figures with ``date`` a datetime, as the run hands them to ``render``."""
    data = _json(path)
    data["date"] = datetime.fromisoformat(data["date"])
    return data


def _report(path: Path) -> Sample:
    """bench.run's figures: each repeat a ``Result``."""
    data = _dated(path)
    for scenario in data["summary"].values():
        scenario["repeats"] = [Result(**r) for r in scenario["repeats"]]
    return data


def _timer_index(path: Path) -> Sample:
    """bench.timer_index's figures: each row a ``Row``."""
    data = _dated(path)
    data["rows"] = [timer_index.Row(**r) for r in data["rows"]]
    return data


@dataclass(frozen=True)
class Page:
    name: str  # docs/<name>.md, and its sample tests/tools/data/bench/<name>.json
    headline: str
    render: Callable[[Sample], str]
    load: Callable[[Path], Sample]


PAGES = (
    Page("benchmarks", "# Benchmarks", report.render, _report),
    Page("benchmarks-directives", "# Directives: fan-out, acks, status", directives.render,
         _dated),
    Page("benchmarks-intake", "# Intake: an alarm storm, placement, addresses", storm.render,
         _dated),
    Page("benchmarks-signing", "# Signed updates: verification cost and engine throughput",
         signed.render, _dated),
    Page("benchmarks-scale", "# Scale: open cases, memory, changelog, restart", scale.render,
         scale.load),
    Page("benchmarks-timers", "# SLA timers: lateness with many armed, a burst, a SIGKILL",
         timers.render, _json),
    Page("benchmarks-broker-fetch", "# The embedded broker's fetch cost grows with stored "
         "batches", broker_fetch.render, _dated),
    Page("benchmarks-timers-index", "# SLA timers: the index scan over tombstones, with the "
         "floor and without", timer_index.render, _timer_index),
    Page("benchmarks-cityday", "# A city day under kill -9", cityday.render, _dated),
    Page("benchmarks-failover", "# Failover: a SIGKILLed worker's partitions, with and without "
         "standby replicas", failover.render, _json),
    Page("benchmarks-capacity", "# Capacity: the intake rate one, two and three workers carry "
         "with p99 under 1 s", capacity.render, _json),
    Page("benchmarks-replay", "# Replay: a synthetic month decided again by the core",
         replay.render, _dated),
    Page("benchmarks-profile", "# Where a complaint's time goes (issue 27: measure first)",
         profile.render, _dated),
)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_the_page_renders_from_its_sample(page: Page, tmp_path: Path) -> None:
    out = tmp_path / f"{page.name}.md"
    write_page(out, page.render(page.load(DATA / f"{page.name}.json")))
    text = out.read_text(encoding="utf-8")
    assert text.splitlines()[0] == page.headline
    assert "## Method" in text
    left = [m.group(0) for m in PLACEHOLDER.finditer(text)]
    assert left == [], f"unreplaced placeholders in {page.name}: {left}"


def test_every_page_a_benchmark_writes_has_a_sample() -> None:
    """A new benchmark page (a module writing docs/benchmarks*.md) comes with its sample."""
    writers = {p.stem for p in BENCH.glob("*.py")
               if 'ROOT / "docs" / "benchmarks' in p.read_text(encoding="utf-8")}
    rendered = {p.render.__module__.removeprefix("bench.") for p in PAGES}
    assert {RENDERED_BY.get(w, w) for w in writers} == rendered
    assert {p.stem for p in DATA.glob("*.json")} == {p.name for p in PAGES}


@pytest.mark.parametrize("text", ["{m[cores]}", "{a[n]:,}", "{rate:g}/s", "{name}", "{x!r}",
                                  "{data.date}"])
def test_a_format_field_left_in_a_page_is_found(text: str) -> None:
    assert PLACEHOLDER.search(f"a page with {text} in it")


@pytest.mark.parametrize("text", ["`GET /directives/{id}`", '{type="dispatched"}',
                                  "`{kind, stage, at}`", "`{action: suspend, until: T}`",
                                  "{'4': 1200}", '{"level": "street"}'])
def test_braces_a_page_means_are_not_placeholders(text: str) -> None:
    assert not PLACEHOLDER.search(text)


def test_str_format_template_braces_are_doubled() -> None:
    """bench/report.py's template goes through str.format: the one that broke ``make bench``
    (``GET /directives/{id}``) is written ``{{id}}`` and comes out single."""
    assert "`GET\n/directives/{id}`" in report.render(_report(DATA / "benchmarks.json"))
