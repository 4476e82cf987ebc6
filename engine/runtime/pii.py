"""Personal data masked for display: phone and ID numbers in free text, a citizen's fields.

Every surface that shows a case or a message (``GET /cases/{id}``, ``zhida case`` and ``tail``,
the logs) masks through this module, so there is one rule (docs/operations.md, "Personal
data"). Pure functions, no I/O.

**Numbers in free text.** A *run* is a digit followed by more digits, with any number of
separators between them (whitespace, ``- . / ( ) +``, their full-width forms, dashes,
zero-width spaces). Every run of 7 or more digits is masked in place, each hidden digit
becoming ``*`` and the separators staying, except the shapes below. What stays visible:

- a mobile number (``1[3-9]`` + 9 digits, with or without ``+86``/``0086``/``86``): the
  country code, the first 3 and the last 4 digits: ``+86 137 **** 3852``, ``137****3852``;
- another number ``phonenumbers`` finds valid (one starting with ``+``, ``00`` or the trunk
  ``0``: landlines, foreign numbers): the country code, the trunk ``0`` and the area code as
  written, and the last 4 digits of the rest, 3 when only 7 are left: ``023-****1234``,
  ``0755-****5678``, ``+852 **** 6789``;
- an ID number (身份证: 17 digits and a check digit or ``X``, or 15 digits, with a plausible
  birth date): the region (first 6) and the last 2: ``110105**********2X``;
- any other run: the last 4 digits (3 for a run of 7) and, from 11 digits on, the first 3.

At least 4 digits of a number are always hidden. Runs left whole, not being personal data:
a calendar date ``YYYY-MM-DD`` (``/`` or ``.`` too, years 1900–2099, optionally followed by an
hour), the seconds of a time after ``:`` (``16.828000+08``), a 9-digit administrative code
written together (``500103001``), and digits inside an identifier (touching a Latin letter,
``c-2026-000123``, ``ZD0846600700C``) unless they are a mobile, a valid phone or an ID
number. Other runs shorter than 7 digits (amounts, house numbers, ``5000元``) are not touched.

``phonenumbers`` classifies; it does not search: its ``PhoneNumberMatcher`` stops after
65,535 candidates, takes ~0.6 s on 200 KB of digits, misses ``0755-12345678-8001`` and takes
``c-2026-000123`` for a phone. Finding runs is one possessive regex, linear in the text.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import orjson
import phonenumbers
from phonenumbers import NumberParseException

MASK = "***"
SEP = (r"\s\-./()+\u00ad\u2010-\u2015\u2212\u200b-\u200d\u2060\ufeff"
       r"\uff08\uff09\uff0b\uff0d\uff0e\uff0f")
# a maximal run of >= 7 digits (and an ID's check X); possessive: no backtracking, linear
_RUN = re.compile(rf"\d(?:[{SEP}]*+\d){{6,}}+[Xx]?")
_MOBILE = re.compile(r"(?:0086|86)?1[3-9]\d{9}")
# a Chinese landline: trunk 0, the area code (10, 2X or 3 digits), a 7-8 digit local number
_LANDLINE = re.compile(r"0(10|2\d|[3-9]\d\d)\d{7,8}")
PARSE_BUDGET = 32  # phonenumbers parses per text (~0.25 ms each); then the plain rule
# left whole: at most 10 digits each, so no mobile (11) hides in one
_DATE = re.compile(r"(?:19|20)\d\d([-/.])(?:0?[1-9]|1[0-2])\1(?:0?[1-9]|[12]\d|3[01])"
                   r"(?: \d{1,2})?")  # and the hour of "2026-12-07 10:00"
_SECONDS = re.compile(r"\d\d[.,]\d{1,6}(?:[+\-]\d\d)?")  # 16.828000+08 after "15:43:"
_PROVINCES = frozenset({"11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34",
                        "35", "36", "37", "41", "42", "43", "44", "45", "46", "50", "51", "52",
                        "53", "54", "61", "62", "63", "64", "65"})  # first 2 digits of a code


_NOT_DIGIT = re.compile(r"\D")


def _ascii_digits(text: str) -> str:
    if text.isascii():
        return _NOT_DIGIT.sub("", text)
    return "".join(str(unicodedata.decimal(c)) for c in text if c.isdecimal())


def _is_id(d: str) -> bool:
    """18 characters (17 digits + digit or X) or 15 digits, with a plausible birth date."""
    if len(d) == 18 and d[:17].isdigit():
        year, month, day = d[6:8], int(d[10:12]), int(d[12:14])
        return year in ("18", "19", "20") and 1 <= month <= 12 and 1 <= day <= 31
    if len(d) == 15 and d.isdigit():
        return 1 <= int(d[8:10]) <= 12 and 1 <= int(d[10:12]) <= 31
    return False


def _phone(d: str, text: str, plus: bool) -> tuple[int, int] | None:
    """(digits shown at the front, at the end) of a number phonenumbers finds valid: its
    country code, trunk 0 and area code as written, then the rest's last 4 (3 of 7)."""
    try:
        number = phonenumbers.parse(("+" if plus else "") + text, "CN")
    except NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number) or number.extension:
        return None
    national = phonenumbers.national_significant_number(number)
    if not d.endswith(national):
        return None
    head = len(d) - len(national) + phonenumbers.length_of_geographical_area_code(number)
    rest = len(d) - head
    return head, max(0, min(4, rest - 4))


def _plan(d: str, text: str, before: str, after: str, strict: bool, budget: list[int]
          ) -> tuple[int, int] | None:
    """(shown at the front, shown at the end) for the digits ``d`` of one run, or None to
    leave it whole. ``strict`` (a phone field): no run is left whole."""
    n = len(d)
    plus = before[-1:] in ("+", "＋")
    if _is_id(d):
        return 6, 2
    if _MOBILE.fullmatch(d) and (not plus or d.startswith("86")):
        return n - 8, 4  # the country code as written, the first 3, the last 4
    # touching a Latin letter, or a letter and "-"/"_" before it: c-2026-000123, ZD…0700C
    glued = _word(before[-1:]) or _word(after) or (before[-1:] in ("-", "_")
                                                   and _word(before[:1]))
    if not strict:
        if _DATE.fullmatch(text) or (before[-1:] == ":" and _SECONDS.fullmatch(text)):
            return None
        if n == 9 and text == d and d[:2] in _PROVINCES:
            return None  # an administrative code: a street's, 500103001
    landline = None if plus else _LANDLINE.fullmatch(d)
    if landline:
        head = 1 + len(landline.group(1))
        return head, min(4, n - head - 4)
    if (plus or d[0] == "0") and budget[0] > 0:
        budget[0] -= 1
        shown = _phone(d, text, plus)
        if shown is not None:
            return shown
    if glued and not strict:
        return None  # part of an identifier: c-2026-000123
    head = 3 if n >= 11 else 0
    return head, min(4, n - head - 4)


def _word(c: str) -> bool:
    return c != "" and c.isascii() and (c.isalpha() or c == "_")


def _reveal(text: str, head: int, tail: int) -> str:
    """``text`` with every digit (and an ID's X) but the first ``head`` and last ``tail``
    as ``*``; separators stay where they are."""
    if text.isascii() and text.isdigit():  # the usual case, written together
        n = len(text)
        return text[:head] + "*" * (n - head - tail) + text[n - tail:]
    count = sum(1 for c in text if c.isdecimal() or c in "Xx")
    out = []
    i = 0
    for c in text:
        if c.isdecimal() or c in "Xx":
            out.append(c if i < head or i >= count - tail else "*")
            i += 1
        else:
            out.append(c)
    return "".join(out)


def _run(m: re.Match[str], strict: bool = False, budget: list[int] | None = None) -> str:
    s, text = m.string, m.group()
    start, end = m.span()
    x = text[-1] in "Xx"
    body = text[:-1] if x else text
    d = _ascii_digits(body)
    before = s[max(start - 2, 0):start]  # two characters: "c-" of c-2026-000123
    budget = [1] if budget is None else budget
    if x and len(d) == 17 and _is_id(d + "X"):
        return _reveal(text, 6, 2)
    if x:  # a letter after the digits: not an ID
        return _masked_run(body, d, before, text[-1], strict, budget) + text[-1]
    return _masked_run(body, d, before, s[end] if end < len(s) else "", strict, budget)


def _masked_run(text: str, d: str, before: str, after: str, strict: bool, budget: list[int]
                ) -> str:
    if len(d) < 7:
        return text
    plan = _plan(d, text, before, after, strict, budget)
    if plan is None:
        return text
    n = len(d)  # whatever the shape: at least 4 digits hidden
    tail = max(0, min(plan[1], n - 4))
    return _reveal(text, max(0, min(plan[0], n - 4 - tail)), tail)


def mask_text(text: str) -> str:
    """Free text with its phone numbers, ID numbers and other runs of 7+ digits masked (the
    module's rule); linear in the text's length."""
    if not isinstance(text, str) or not text:
        return text
    budget = [PARSE_BUDGET]
    return _RUN.sub(lambda m: _run(m, budget=budget), text)


def mask_phone_field(value: Any) -> Any:
    """A phone field: its number masked as in free text (but never left whole, whatever its
    shape), and ``***`` when it is not one number (words in it, fewer than 7 digits)."""
    if value is None or value == "":
        return value
    if not isinstance(value, str):
        return MASK
    text = value.strip()
    start = len(text) - len(text.lstrip("+＋(（"))
    m = _RUN.fullmatch(text, start)
    if m is None:
        return MASK
    return text[:start] + _run(m, strict=True)


def mask_name(name: Any) -> Any:
    """A person's name: its first character (the family name, usually), the rest ``*``."""
    if name is None or name == "":
        return name
    if not isinstance(name, str):
        return MASK
    return name[:1] + "*" * max(len(name) - 1, 1)


PHONE_KEYS = frozenset({"phone", "mobile", "tel", "telephone", "contact_phone"})
SECRET_KEYS = frozenset({"id_card", "idcard", "id_number", "email", "wechat", "qq",
                         "original_base64", "_raw_base64"})
CITIZEN_KEYS = frozenset({"citizen", "complainant_contact", "reporter"})


def mask_citizen(citizen: Any) -> Any:
    """A citizen object: ``name`` to its first character, a phone field to its masked
    number, every other field (``id_card``, ``address``, ``wechat``, nested objects, what
    any system adds) to ``***`` whole. Empty fields stay empty."""
    if citizen is None:
        return None
    if not isinstance(citizen, dict):
        return MASK
    out: dict[str, Any] = {}
    for k, v in citizen.items():
        if v is None or v == "":
            out[k] = v
        elif k == "name":
            out[k] = mask_name(v)
        elif k in PHONE_KEYS:
            out[k] = mask_phone_field(v)
        else:
            out[k] = MASK
    return out


# fields the engine writes itself (ids, codes, times, states): shown as they are, even when
# an id is all digits; every other string goes through mask_text
ENGINE_KEYS = frozenset({
    "case_id", "directive_id", "order_id", "event_id", "complaint_id", "feedback_id",
    "update_id", "notification_id", "insight_id", "sensor_id", "key", "origin_key",
    "unit", "target", "actor", "issuer", "late_unit", "supervisor", "assign_to",
    "assist_units", "co_handlers", "targets", "joins", "group", "policy", "category", "kind",
    "type", "state", "stage", "priority", "channel", "source", "role", "outcome", "rating",
    "ratings", "severity", "source_topic", "topic", "partition", "offset", "seq", "at",
    "due", "until", "start", "by", "original_sha256",
})
MAX_DEPTH = 32  # deeper than any contract message; a hostile nesting is masked whole
_JSON_PERSONAL = re.compile(
    r'("(?:name|phone|mobile|tel|telephone|id_card|idcard|id_number|wechat|email|qq)"'
    r'\s{0,8}:\s{0,8}")[^"]{0,500}')


def _engine_key(key: str) -> bool:
    return key in ENGINE_KEYS or key.endswith(("_at", "_due"))


def _flat(value: Any) -> bool:
    """A scalar or a list of scalars (``co_handlers``): what an engine field holds."""
    if isinstance(value, list | tuple):
        return not any(isinstance(v, dict | list | tuple) for v in value)
    return not isinstance(value, dict)


def mask_record(value: Any, _depth: int = 0) -> Any:
    """A message or a case as JSON values, masked for display: citizen objects by
    ``mask_citizen``, phone and other personal fields wherever they are, a dead letter's
    ``original`` as the message it was, engine fields as they are, all other text by
    ``mask_text``."""
    if _depth > MAX_DEPTH:
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, list | tuple):
        return [mask_record(v, _depth + 1) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for k, v in value.items():
        key = str(k)
        if key in CITIZEN_KEYS:
            out[k] = mask_citizen(v)
        elif key in PHONE_KEYS:
            out[k] = mask_phone_field(v)
        elif key in SECRET_KEYS:
            out[k] = v if v is None or v == "" else MASK
        elif key in ("original", "_raw") and isinstance(v, str):
            out[k] = mask_original(v)
        elif _engine_key(key) and _flat(v):
            out[k] = v
        else:
            out[k] = mask_record(v, _depth + 1)
    return out


def mask_original(text: str) -> str:
    """A message kept as text (a dead letter's ``original``): masked as the JSON it holds;
    text that is not JSON (cut, broken) has the values of personal-looking keys masked too."""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return mask_text(_JSON_PERSONAL.sub(rf"\1{MASK}", text))
    if isinstance(parsed, dict | list):
        return orjson.dumps(mask_record(parsed)).decode()
    return mask_text(text)
