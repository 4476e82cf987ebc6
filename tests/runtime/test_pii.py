"""Personal data masking (engine/runtime/pii.py): phone and ID numbers in any format a Chinese
hotline sees, what must stay, a citizen's fields, messages, and ``GET /cases/{id}``."""

from __future__ import annotations

import random
import re
import time
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.model import CaseEvent, CaseFile, CaseState, Complainant, Pause
from engine.runtime.http.routes import case_view
from engine.runtime.logs import mask_exception, mask_pii
from engine.runtime.pii import (
    SEP,
    mask_citizen,
    mask_name,
    mask_original,
    mask_phone_field,
    mask_record,
    mask_text,
)
from schemas.inbound import Citizen

MASKED = [
    # mobiles: the country code as written, the first 3 and the last 4
    ("13768373852", "137****3852"),
    ("137 6837 3852", "137 **** 3852"),
    ("137-6837-3852", "137-****-3852"),
    ("137.6837.3852", "137.****.3852"),
    ("+86 137 6837 3852", "+86 137 **** 3852"),
    ("+86-137-6837-3852", "+86-137-****-3852"),
    ("(+86)13768373852", "(+86)137****3852"),
    ("0086 137 6837 3852", "0086 137 **** 3852"),
    ("86 13768373852", "86 137****3852"),
    ("1376 8373 852", "137* ***3 852"),
    ("电话13768373852联系", "电话137****3852联系"),
    ("手机：137—6837—3852。", "手机：137—****—3852。"),
    ("１３７６８３７３８５２", "１３７****３８５２"),
    ("＋８６ １３７ ６８３７ ３８５２", "＋８６ １３７ **** ３８５２"),
    ("137\u200b6837\u200b3852", "137\u200b****\u200b3852"),
    ("Tel13768373852", "Tel137****3852"),
    # landlines: the trunk 0 and the area code, the local number's last 4
    ("023-6386 1234", "023-**** 1234"),
    ("(023)63861234", "(023)****1234"),
    ("（023）6386-1234", "（023）****-1234"),
    ("0236386 1234", "023**** 1234"),
    ("010-12345678", "010-****5678"),
    ("0755-12345678", "0755-****5678"),
    ("0755-12345678 转 8001", "0755-****5678 转 8001"),
    ("023-63861234 ext. 12", "023-****1234 ext. 12"),
    ("0755-12345678-8001", "075*-********-8001"),  # no shape: the plain rule
    ("023-6386123", "023-****123"),  # a 7-digit local number: its last 3
    ("TEL02363861234", "TEL023****1234"),
    ("+852 2345 6789", "+852 **** 6789"),
    ("+1 415 555 2671", "+1 415 *** *671"),
    # local numbers and other runs of 7+ digits: the last 4 (3 of 7)
    ("63861234", "****1234"),
    ("6386 1234", "**** 1234"),
    ("400-820-8820", "***-***-8820"),
    ("1234567元", "****567元"),
    # ID numbers: the region (first 6) and the last 2
    ("11010519491231002X", "110105**********2X"),
    ("身份证11010519491231002x号", "身份证110105**********2x号"),
    ("110105 19491231 002X", "110105 ******** **2X"),
    ("500103199001011234", "500103**********34"),
    ("110105491231002", "110105*******02"),
    # a date touching a phone is a phone: 137 2026 1207
    ("137 2026-12-07", "137 ****-12-07"),
]

KEPT = [
    "2026-12-07T10:00:00+08:00",
    "2026-11-30T15:43:16.828000Z",
    "2026-11-30T15:43:16.828000+08:00",
    "2026-12-07 10:00 发现路面塌陷",
    "2026/12/07", "2026.12.07",
    "500103001",  # a street's code
    "500103",
    "c-2026-000123",
    "ZDA4D627F0D0846600700C",
    "ZDA4D627F0D0846600700C/3/case/500103001",
    "5000元", "赔偿 12,000,000 元",
    "95588", "12345", "110", "第3次", "house 12-3-401",
    "",
]


@pytest.mark.parametrize(("text", "masked"), MASKED)
def test_numbers_are_masked(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize("text", KEPT)
def test_what_is_not_personal_stays(text: str) -> None:
    assert mask_text(text) == text


def test_masking_keeps_separators_and_hides_at_least_four_digits() -> None:
    for text, masked in MASKED:
        assert len(masked) == len(text)
        assert masked.count("*") >= 4, text
        assert [c for c in text if not c.isdecimal() and c not in "Xx"] == \
            [c for c in masked if c != "*" and not c.isdecimal() and c not in "Xx"]


def test_several_numbers_in_one_description() -> None:
    text = ("市民反映：解放碑附近路面塌陷，联系电话13768373852或023-63861234，身份证"
            "11010519491231002X，2026-12-07 10:00 发现，损失约5000元。")
    assert mask_text(text) == (
        "市民反映：解放碑附近路面塌陷，联系电话137****3852或023-****1234，身份证"
        "110105**********2X，2026-12-07 10:00 发现，损失约5000元。")


_SEPARATED = re.compile(f"[{SEP}]")


def _longest_digit_run(text: str) -> int:
    """Digits in a row once separators are taken out."""
    return max((len(m) for m in re.findall(r"\d+", _SEPARATED.sub("", text))), default=0)


TEXT = st.text(st.sampled_from(list("0123456789") * 4 + list(" -.()+/") + list("电话号码，：:")
                               + ["１", "３", "\u3000", "—"]), max_size=200)
MOBILE = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)


@settings(max_examples=500, deadline=None)
@given(TEXT)
def test_no_eleven_digits_survive(text: str) -> None:
    """Whatever the digits, separators and CJK around: nothing longer than 10 digits in a
    row (a date and its hour) comes out, so no mobile number does."""
    assert _longest_digit_run(mask_text(text)) <= 10


@settings(max_examples=500, deadline=None)
@given(TEXT, MOBILE, st.lists(st.sampled_from([*" -.()", "", "", ""]), min_size=10,
                              max_size=10), TEXT)
def test_no_mobile_survives_in_any_format(before: str, mobile: str, seps: list[str],
                                          after: str) -> None:
    written = mobile[0] + "".join(s + d for s, d in zip(seps, mobile[1:], strict=True))
    out = _SEPARATED.sub("", mask_text(before + written + after))
    assert mobile not in out


def test_long_text_is_linear() -> None:
    rng = random.Random(7)
    digits = "".join(rng.choice("0123456789 -.()+") for _ in range(200_000))
    mobiles = ("电话13768373852联系，" * 12_000)[:200_000]
    landlines = ("座机023-63861234，" * 14_000)[:200_000]
    for text in (digits, mobiles, landlines, "1" + " " * 200_000 + "x", "(" * 200_000):
        best = min(_timed(text) for _ in range(2))
        assert best < 0.5, (text[:30], best)


def _timed(text: str) -> float:
    t = time.perf_counter()
    out = mask_text(text)
    elapsed = time.perf_counter() - t
    assert len(out) == len(text)
    return elapsed


# ---- fields ----


def test_name_keeps_its_first_character() -> None:
    assert mask_name("张三丰") == "张**"
    assert mask_name("李四") == "李*"
    assert mask_name("王") == "王*"
    assert mask_name("") == "" and mask_name(None) is None
    assert mask_name(12345) == "***"


@pytest.mark.parametrize(("value", "shown"), [
    ("13768373852", "137****3852"),
    ("+86 137 6837 3852", "+86 137 **** 3852"),
    ("(023)63861234", "(023)****1234"),
    ("2026-12-07", "****-12-07"),  # a phone field is never left whole
    ("500103001", "*****3001"),
    ("call me", "***"),
    ("13768373852 (home)", "***"),
    ("12345", "***"),
    (13768373852, "***"),
    ("", ""),
    (None, None),
])
def test_phone_field(value: object, shown: object) -> None:
    assert mask_phone_field(value) == shown


def test_every_other_citizen_field_is_masked_whole() -> None:
    citizen = {"name": "张三丰", "phone": "137-6837-3852", "id_card": "11010519491231002X",
               "address": "渝中区解放碑1号", "wechat": "zhang_sf", "age": 71,
               "contacts": [{"phone": "13912345678"}], "nested": {"a": 1}, "email": None,
               "note": ""}
    assert mask_citizen(citizen) == {
        "name": "张**", "phone": "137-****-3852", "id_card": "***", "address": "***",
        "wechat": "***", "age": "***", "contacts": "***", "nested": "***", "email": None,
        "note": ""}
    assert mask_citizen(None) is None
    assert mask_citizen("张三 13768373852") == "***"


def test_a_message_is_masked_and_engine_fields_stay() -> None:
    order = {"order_id": "ZD0123/2/case/500103001", "kind": "case", "target": "500103001",
             "case_id": "ZD0123", "complaint_id": "2026120700001234", "due":
             "2026-12-07T10:00:00+08:00", "summary": "路灯不亮 13768373852",
             "location": {"unit": "500103001", "address": "解放碑 电话 023-63861234"},
             "citizen": {"name": "李四", "phone": "13900139000", "id_card": "x"},
             "extra": {"reporter": {"name": "王五"}, "mobile": "13812345678",
                       "free": ["0755-12345678"]}}
    out = mask_record(order)
    assert out["order_id"] == order["order_id"] and out["target"] == "500103001"
    assert out["complaint_id"] == "2026120700001234" and out["due"] == order["due"]
    assert out["summary"] == "路灯不亮 137****3852"
    assert out["location"] == {"unit": "500103001", "address": "解放碑 电话 023-****1234"}
    assert out["citizen"] == {"name": "李*", "phone": "139****9000", "id_card": "***"}
    assert out["extra"] == {"reporter": {"name": "王*"}, "mobile": "138****5678",
                            "free": ["0755-****5678"]}


def test_a_dead_letters_original_is_masked_as_the_message_it_was() -> None:
    complaint = {"complaint_id": "c1", "description": "电话13768373852",
                 "citizen": {"name": "李四", "phone": "13900139000"}}
    letter = {"reason": "schema", "detail": "channel: bad", "key": "c1",
              "original": orjson.dumps(complaint).decode()}
    out = mask_record(letter)
    assert orjson.loads(out["original"]) == {
        "complaint_id": "c1", "description": "电话137****3852",
        "citizen": {"name": "李*", "phone": "139****9000"}}
    cut = orjson.dumps(complaint).decode()[:-5]  # an oversize original, cut: not JSON
    masked = mask_original(cut)
    assert "李四" not in masked and "13900139000" not in masked and "13768373852" not in masked
    assert mask_record({"_raw_base64": "MTM3Njg="}) == {"_raw_base64": "***"}


def test_hostile_nesting_is_cut() -> None:
    deep: object = "13768373852"
    for _ in range(500):
        deep = [deep]
    assert "13768373852" not in orjson.dumps(mask_record(deep)).decode()


# ---- GET /cases/{id} ----

PHONES = ["13768373852", "+86 137 6837 3852", "137-6837-3852", "0086 13768373852",
          "023-6386 1234", "(023)63861234", "0236386 1234", "0755-12345678",
          "11010519491231002X"]


def test_case_view_masks_every_citizen_field_and_every_number() -> None:
    at = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    text = "，".join(PHONES)
    citizens = [
        Citizen(name="张三丰", phone="+86 137 6837 3852", id_card="11010519491231002X",
                address="渝中区解放碑1号", wechat="zsf1949", contacts={"home": "023-63861234"}),
        Citizen(name="李四", phone="023-6386 1234"),
        Citizen(phone="not a number"),
    ]
    file = CaseFile(
        case_id="ZD00AA11BB22CC33DD44", source="complaint", category="road_damage",
        location={"unit": "500103001", "address": f"解放碑 {text}", "landmark": text},
        summary=f"路面塌陷，{text}", origin_key="2026120700001234", created_at=at,
        complainants=tuple(Complainant(complaint_id=f"c-{i}", channel="hotline", citizen=c)
                           for i, c in enumerate(citizens)))
    state = CaseState(case_id=file.case_id, source="complaint", state="suspended",
                      category="road_damage", priority="normal", unit="500103001",
                      updated_at=at, pause=Pause(start=at, reason=f"市民要求 {text}"))
    history = [
        CaseEvent(case_id=file.case_id, seq=1, type="created", at=at, state="received",
                  unit="500103001"),
        CaseEvent(case_id=file.case_id, seq=2, type="progress", at=at, state="acknowledged",
                  unit="500103001", actor="500103001", note=f"已联系 {text}"),
        CaseEvent(case_id=file.case_id, seq=3, type="suspended", at=at, state="suspended",
                  unit="500103001", actor="500103001", reason=f"等待 {text}"),
    ]
    view = case_view(state, file, history)
    body = orjson.dumps(view).decode()
    flat = _SEPARATED.sub("", body)
    for p in PHONES:
        assert _SEPARATED.sub("", p)[-11:] not in flat, p
    for secret in ("张三丰", "李四", "渝中区解放碑1号", "zsf1949", "1949"):
        assert secret not in body, secret
    first, second, third = (c["citizen"] for c in view["complainants"])
    assert first == {"name": "张**", "phone": "+86 137 **** 3852", "id_card": "***",
                     "address": "***", "wechat": "***", "contacts": "***"}
    assert second == {"name": "李*", "phone": "023-**** 1234"}
    assert third == {"name": None, "phone": "***"}
    # the engine's own fields as they are
    assert view["case_id"] == file.case_id and view["unit"] == "500103001"
    assert view["origin_key"] == "2026120700001234" and view["location"]["unit"] == "500103001"
    assert view["updated_at"] == "2026-12-07T02:00:00Z"
    assert [e["at"] for e in view["history"]] == ["2026-12-07T02:00:00Z"] * 3
    assert view["summary"].startswith("路面塌陷，137****3852，+86 137 **** 3852，")
    assert view["pause"]["reason"].startswith("市民要求 137****3852")


def test_logs_mask_free_text_keep_times_and_numbers() -> None:
    out = mask_pii(None, "warning", {
        "event": "dead_letter", "timestamp": "2026-12-07T02:00:00.123456Z",
        "detail": "channel: bad, 电话 023-63861234", "offset": 12345678, "partition": 3,
        "citizen": {"name": "李四"}, "unit": "500103001"})
    assert out["timestamp"] == "2026-12-07T02:00:00.123456Z"
    assert out["detail"] == "channel: bad, 电话 023-****1234"
    assert out["offset"] == 12345678 and out["unit"] == "500103001"
    assert out["citizen"] == "***"
    rendered = mask_exception(None, "error", {"exception": "ValueError: '13768373852'"})
    assert rendered["exception"] == "ValueError: '137****3852'"
