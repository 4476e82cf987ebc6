"""Operator output is inert (engine/tools/inert.py): no value from a message can drive the
terminal, and each command's formatting, given a hostile message, prints only escapes."""

from __future__ import annotations

import json
import re
import sys
import unicodedata

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.tools.inert import LIMIT, cut, visible, visible_json
from engine.tools.ops import case, common, deadletters, lag, tail

HOSTILE = "\x1b]2;pwned\x07\x1b[2J"
UNSAFE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs"}
NASTY = (HOSTILE + "\u202eevil\u202c\n\tfake line\r\x9b31m\x7f\u2028\u2029\u2066x\u2069"
         "\u200b\ufeff\U000e0001")


def unsafe(text: str) -> list[str]:
    """Characters a terminal may act on (a newline between printed lines aside)."""
    return [c for c in text if c != "\n" and unicodedata.category(c) in UNSAFE_CATEGORIES]


def test_controls_show_as_escapes() -> None:
    assert visible(HOSTILE) == "\\x1b]2;pwned\\x07\\x1b[2J"
    assert visible("a\nb\tc\r") == "a\\x0ab\\x09c\\x0d"  # one value, one line
    assert visible("\x7f\x80\x9b") == "\\x7f\\x80\\x9b"
    assert visible("\u202eabc\u202c") == "\\u202eabc\\u202c"
    assert visible("\u2066x\u2069\u2028\u2029") == "\\u2066x\\u2069\\u2028\\u2029"
    assert visible("\U000e0001") == "\\U000e0001"
    assert visible("\ud800") == "\\ud800"  # a lone surrogate (a surrogateescape'd byte)
    assert visible("张三 解放碑 12345 café ☃ 👍") == "张三 解放碑 12345 café ☃ 👍"
    assert visible(None) == "None" and visible(12) == "12"


def test_every_control_format_and_separator_character_is_escaped() -> None:
    wanted = [chr(cp) for cp in range(sys.maxunicode + 1)
              if unicodedata.category(chr(cp)) in UNSAFE_CATEGORIES]
    assert all(visible(c).startswith("\\") for c in wanted)
    others = "".join(chr(cp) for cp in range(sys.maxunicode + 1)
                     if unicodedata.category(chr(cp)) not in UNSAFE_CATEGORIES
                     and cp != 0x2065)  # unassigned, escaped with its neighbours
    assert visible(others) == others


def test_long_values_are_cut_before_escaping() -> None:
    assert cut("x" * 300, 200) == "x" * 200 + "…(+100 chars)"
    assert visible("\x1b" * 300, 2) == "\\x1b\\x1b…(+298 chars)"
    assert visible("short", LIMIT) == "short"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_inert_json_is_the_same_json(text: str) -> None:
    for encoded in (json.dumps({"v": text}, ensure_ascii=False),
                    json.dumps({"v": text}, ensure_ascii=False, indent=2)):
        out = visible_json(encoded)
        assert json.loads(out) == {"v": text}
        assert not unsafe(out)


# ---- each command's formatting, given a hostile message ----


def _inert(lines: list[str] | str) -> None:
    text = "\n".join(lines) if isinstance(lines, list) else lines
    assert not unsafe(text), [c for c in unsafe(text)]
    assert "\x1b" not in text and "\u202e" not in text


@pytest.mark.parametrize("pretty", [False, True])
@pytest.mark.parametrize("meta", [False, True])
def test_tail_prints_a_hostile_record_inert_and_masked(pretty: bool, meta: bool) -> None:
    value = {"kind": "case", "case_id": "ZD1", "summary": NASTY + " 13768373852",
             "citizen": {"name": "\x1b[2J李四", "phone": "13900139000"},
             NASTY: [NASTY]}
    line = tail.render("zhida.dispatch.500103", 0, 7, NASTY * 50, value,
                       {"ce_type": NASTY}, 1, tail.TailOptions(pretty=pretty, meta=meta))
    _inert(line)
    assert "13768373852" not in line and "13900139000" not in line and "李四" not in line
    body = line.split("\n", 1)[1] if pretty else line
    decoded = orjson.loads(body)
    shown = decoded["value"] if meta else decoded
    assert shown["summary"] == NASTY + " 137****3852"  # the same text, only escaped
    if pretty:
        head = line.split("\n", 1)[0]
        assert "…(+" in head and len(head) < 3 * LIMIT * 6


def test_case_prints_a_hostile_case_inert() -> None:
    data = {"case_id": NASTY, "state": NASTY, "stage": "ack", "due": NASTY, "unit": NASTY,
            "co_handlers": [NASTY], "category": NASTY, "priority": NASTY, "source": NASTY,
            "summary": NASTY * 100, "location": {"address": NASTY}, "supervisor": NASTY,
            "complainants": [{"complaint_id": NASTY, "channel": NASTY,
                              "citizen": {"name": NASTY, "phone": NASTY}}],
            "history": [{"seq": 1, "at": NASTY, "type": NASTY, "state": NASTY, "unit": NASTY,
                         "actor": NASTY, "note": NASTY, NASTY: NASTY}]}
    lines = case.case_lines(data, unit_name=lambda code: NASTY)
    _inert(lines)
    assert all("\n" not in line for line in lines)
    assert max(len(line) for line in lines) < 20 * LIMIT
    _inert(case.case_json(data))
    assert orjson.loads(case.case_json(data)) == data


def test_deadletters_print_a_hostile_letter_inert() -> None:
    body = {"reason": NASTY, "detail": NASTY + " 电话13768373852", "source_topic": NASTY,
            "partition": NASTY, "offset": 3, "key": NASTY * 100, "at": NASTY}
    letter = deadletters.Letter("zhida.deadletter", 0, 3, NASTY, body)
    lines = deadletters.letter_lines([letter], "zhida.deadletter", 3)
    _inert(lines)
    assert "13768373852" not in "\n".join(lines)
    assert max(len(line) for line in lines) < 4 * LIMIT * 6
    done = deadletters.Resubmitted(sent=[letter], skipped=[(letter, NASTY)])
    _inert(deadletters.resubmit_lines(done, [letter, letter], dry_run=True, fixed=False))


def test_lag_prints_hostile_names_inert() -> None:
    rows = [lag.LagRow(NASTY, 0, None, 5, 5)]
    _inert(lag.lag_lines(rows, NASTY, NASTY, NASTY))
    _inert(lag.lag_lines([], NASTY, NASTY, NASTY))


def test_an_error_line_is_inert() -> None:
    text = str(common.OpsError(f"GET /cases/x answered 500 {NASTY}"))
    _inert(text)
    assert re.fullmatch(r"[^\n]+", text)
