"""Signed messages: verification, key management, reload, and the keys/sign commands."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.runtime import signing
from engine.runtime.signing import KeysError, KeySet, Signer, b64url_encode, sign
from engine.tools import cli_keys, keys
from schemas.codec import Refused

A, B = "500103", "500104"  # 渝中区, 大渡口区

BODY = orjson.dumps({
    "update_id": "u-500103-000001", "actor": A, "action": "resolve",
    "case_id": "C-20240611-000123", "at": "2024-06-11T10:15:00+08:00",
    "note": "问题已处置完毕，现场积水已排除，井盖已复位。",
})


class Recorder:
    """Stands in for the structlog logger: what was logged, at which level."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **kw: self.lines.append((level, event, kw))


@pytest.fixture
def keydir(tmp_path: Path) -> tuple[Path, Path]:
    """A key set with units A and B (#1 each) and their private keys."""
    jwks, out = tmp_path / "jwks.json", tmp_path / "private"
    keys.issue(jwks, [A, B], out)
    return jwks, out


def private(out: Path, kid: str) -> Path:
    return keys.private_key_path(out, kid)


def refused(keyset: KeySet, value: bytes, header: bytes | str | None, unit: str = A) -> str:
    with pytest.raises(Refused) as e:
        keyset.verify(value, header, unit)
    assert e.value.reason == "unauthorized"
    return e.value.detail


def forged(protected: dict[str, Any], value: bytes, key: Ed25519PrivateKey) -> str:
    """A JWS with any protected header, properly signed by ``key``."""
    segment = b64url_encode(orjson.dumps(protected))
    sig = key.sign(segment + b"." + b64url_encode(value))
    return (segment + b".." + b64url_encode(sig)).decode()


def raw_key(path: Path) -> Ed25519PrivateKey:
    d = signing.b64url_decode(json.loads(path.read_text())["d"])
    return Ed25519PrivateKey.from_private_bytes(d)


# --------------------------------------------------------------------------- round trip


def test_sign_verify_round_trip(keydir: tuple[Path, Path]) -> None:
    jwks, out = keydir
    keyset = KeySet(jwks)
    header = sign(BODY, private(out, f"{A}#1"))
    assert header.count(".") == 2 and ".." in header  # detached payload
    protected = json.loads(signing.b64url_decode(header.split(".")[0]))
    assert protected == {"alg": "EdDSA", "kid": f"{A}#1"}
    keyset.verify(BODY, header, A)
    keyset.verify(BODY, header.encode(), A)  # Kafka header values are bytes


def test_signer_reused_for_many_messages(keydir: tuple[Path, Path]) -> None:
    jwks, out = keydir
    keyset, signer = KeySet(jwks), Signer.from_file(private(out, f"{B}#1"))
    assert signer.unit == B
    for i in range(20):
        body = BODY.replace(b"000001", f"{i:06d}".encode())
        keyset.verify(body, signer.sign(body), B)


def test_one_byte_changed_is_refused(keydir: tuple[Path, Path]) -> None:
    jwks, out = keydir
    keyset = KeySet(jwks)
    header = sign(BODY, private(out, f"{A}#1"))
    tampered = BODY.replace(b"resolve", b"resolvf")
    assert "bad signature" in refused(keyset, tampered, header)


def test_same_json_other_bytes_is_refused(keydir: tuple[Path, Path]) -> None:
    """The signature covers the exact bytes, not the JSON they decode to."""
    jwks, out = keydir
    header = sign(BODY, private(out, f"{A}#1"))
    respaced = json.dumps(json.loads(BODY), ensure_ascii=False, indent=1).encode()
    assert "bad signature" in refused(KeySet(jwks), respaced, header)


def test_valid_signature_by_another_units_key_is_refused(keydir: tuple[Path, Path]) -> None:
    jwks, out = keydir
    header = sign(BODY, private(out, f"{B}#1"))  # B's real key, message claims actor A
    detail = refused(KeySet(jwks), BODY, header, unit=A)
    assert A in detail and B in detail and f"{B}#1" in detail


def test_other_units_key_under_this_units_kid_is_refused(keydir: tuple[Path, Path]) -> None:
    jwks, out = keydir
    header = forged({"alg": "EdDSA", "kid": f"{A}#1"}, BODY, raw_key(private(out, f"{B}#1")))
    assert "bad signature" in refused(KeySet(jwks), BODY, header)


def test_unknown_kid(keydir: tuple[Path, Path]) -> None:
    jwks, _ = keydir
    header = forged({"alg": "EdDSA", "kid": f"{A}#7"}, BODY, Ed25519PrivateKey.generate())
    assert f"unknown kid {A}#7 (not in the key set)" in refused(KeySet(jwks), BODY, header)


def test_huge_protected_headers_are_not_cached(keydir: tuple[Path, Path]) -> None:
    """4,096 cached headers of ~700 KB each would hold GBs: only small ones are kept."""
    jwks, _ = keydir
    keyset = KeySet(jwks)
    key = Ed25519PrivateKey.generate()
    refused(keyset, BODY, forged({"alg": "EdDSA", "kid": "5" * 100_000}, BODY, key))
    assert not keyset._protected
    refused(keyset, BODY, forged({"alg": "EdDSA", "kid": f"{A}#7"}, BODY, key))
    assert len(keyset._protected) == 1


@pytest.mark.parametrize("header", [None, b"", ""])
def test_missing_header(keydir: tuple[Path, Path], header: bytes | str | None) -> None:
    assert "missing zhida-signature" in refused(KeySet(keydir[0]), BODY, header)


@pytest.mark.parametrize(("header", "why"), [
    ("not-a-jws", "3 dot-separated parts"),
    ("a.b.c.d", "3 dot-separated parts"),
    ("eyJhbGciOiJFZERTQSJ9.eyJ4IjoxfQ.c2ln", "detached"),
    ("!!!..c2ln", "not base64url JSON"),
    (b64url_encode(b"[1,2]").decode() + "..c2ln", "not a JSON object"),
    (b64url_encode(b'{"kid":"500103#1"}').decode() + "..c2ln", "no alg"),
    (b64url_encode(b'{"alg":"EdDSA"}').decode() + "..c2ln", "no kid"),
    (b64url_encode(b'{"alg":"EdDSA","kid":"500103#1","crit":["b64"]}').decode() + "..c2ln",
     "crit"),
    (b64url_encode(b'{"alg":"EdDSA","kid":"500103#1\\n"}').decode() + "..c2ln", "is not <unit"),
    (b64url_encode(b'{"alg":"EdDSA","kid":"500103#1"}').decode() + "..c2ln", "64 bytes"),
    (b64url_encode(b'{"alg":"EdDSA","kid":"500103#1"}').decode() + "..@@@@", "64 bytes"),
    ("签名..签名", "not ASCII"),
])
def test_malformed_header(keydir: tuple[Path, Path], header: str, why: str) -> None:
    detail = refused(KeySet(keydir[0]), BODY, header)
    assert "malformed zhida-signature" in detail and why in detail


@pytest.mark.parametrize("alg", ["HS256", "none", "ES256", "RS256"])
def test_wrong_alg(keydir: tuple[Path, Path], alg: str) -> None:
    jwks, out = keydir
    header = forged({"alg": alg, "kid": f"{A}#1"}, BODY, raw_key(private(out, f"{A}#1")))
    assert f"alg '{alg}' not accepted" in refused(KeySet(jwks), BODY, header)


def test_signature_header_from_kafka_headers() -> None:
    assert signing.signature_header(None) is None
    assert signing.signature_header([("ce_id", b"x")]) is None
    assert signing.signature_header([("ce_id", b"x"), ("zhida-signature", b"s")]) == b"s"
    assert signing.signature_header({"zhida-signature": b"s"}) == b"s"
    with pytest.raises(Refused, match="2 times"):
        signing.signature_header([("zhida-signature", b"s"), ("zhida-signature", b"t")])


@pytest.fixture(scope="module")
def signed_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[KeySet, str]:
    tmp = tmp_path_factory.mktemp("prop")
    keys.issue(tmp / "jwks.json", [A], tmp / "private")
    return KeySet(tmp / "jwks.json"), sign(BODY, keys.private_key_path(tmp / "private", f"{A}#1"))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_property_any_single_byte_change_is_refused(signed_once: tuple[KeySet, str],
                                                    data: st.DataObject) -> None:
    keyset, header = signed_once
    i = data.draw(st.integers(0, len(BODY) - 1), label="index")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != BODY[i]), label="byte")
    changed = BODY[:i] + bytes([new]) + BODY[i + 1:]
    with pytest.raises(Refused, match="bad signature"):
        keyset.verify(changed, header, A)


# --------------------------------------------------------------------------- key management


def test_private_key_files_are_0600_in_a_0700_folder(tmp_path: Path) -> None:
    old = os.umask(0)  # even with a permissive umask: the mode is given at creation
    try:
        written = keys.issue(tmp_path / "jwks.json", [A, "500000-JT"], tmp_path / "private")
    finally:
        os.umask(old)
    assert [p.name for p in written] == ["500103.1.jwk", "500000-JT.1.jwk"]
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o700
    jwks = json.loads((tmp_path / "jwks.json").read_text())
    assert all("d" not in k for k in jwks["keys"])  # the key set holds public keys only
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_issue_refuses_existing_unit_and_writes_nothing(keydir: tuple[Path, Path]) -> None:
    jwks, out = keydir
    before = jwks.read_bytes()
    with pytest.raises(KeysError, match="already has 500103#1: use rotate"):
        keys.issue(jwks, ["500105", A], out)
    assert jwks.read_bytes() == before
    assert not keys.private_key_path(out, "500105#1").exists()


def test_private_key_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "k.jwk"
    path.write_text("keep")
    with pytest.raises(KeysError, match="already exists"):
        keys.write_private_key(path, {"d": "x"})
    assert path.read_text() == "keep"


def test_rotated_key_works_and_old_one_too(keydir: tuple[Path, Path]) -> None:
    jwks, out = keydir
    keyset = KeySet(jwks)
    new = keys.rotate(jwks, A, out)
    assert new.name == "500103.2.jwk"
    assert keyset.reload_if_changed() is True
    assert keyset.kids() == [f"{A}#1", f"{A}#2", f"{B}#1"]
    keyset.verify(BODY, sign(BODY, private(out, f"{A}#1")), A)
    keyset.verify(BODY, sign(BODY, new), A)


def test_revoked_key_refused_after_reload(keydir: tuple[Path, Path]) -> None:
    jwks, out = keydir
    keyset = KeySet(jwks)
    keys.rotate(jwks, A, out)
    old_header = sign(BODY, private(out, f"{A}#1"))
    keys.revoke(jwks, f"{A}#1")
    keyset.verify(BODY, old_header, A)  # accepted until the worker reloads
    assert keyset.reload_if_changed() is True
    assert f"unknown kid {A}#1 (revoked)" in refused(keyset, BODY, old_header)
    keyset.verify(BODY, sign(BODY, private(out, f"{A}#2")), A)
    # a revoked version number is never issued again
    assert keys.rotate(jwks, A, out).name == "500103.3.jwk"
    with pytest.raises(KeysError, match="already revoked"):
        keys.revoke(jwks, f"{A}#1")


def test_list_keys(keydir: tuple[Path, Path]) -> None:
    jwks, out = keydir
    keys.rotate(jwks, A, out)
    keys.revoke(jwks, f"{A}#1")
    rows = keys.list_keys(jwks)
    assert [(r.kid, r.revoked) for r in rows] == [
        (f"{A}#1", True), (f"{A}#2", False), (f"{B}#1", False)]
    assert all(len(r.thumbprint) == 43 for r in rows if not r.revoked)


# --------------------------------------------------------------------------- reload


def test_reload_on_file_change(keydir: tuple[Path, Path]) -> None:
    jwks, out = keydir
    keyset = KeySet(jwks)
    assert keyset.reload_if_changed() is False  # nothing changed: one stat, no reload
    keys.issue(jwks, ["500105"], out)
    assert keyset.reload_if_changed() is True
    assert "500105#1" in keyset
    assert keyset.reload_if_changed() is False
    keyset.verify(BODY, sign(BODY, private(out, "500105#1")), "500105")


def test_bad_key_set_on_reload_keeps_old_and_logs_once(keydir: tuple[Path, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    jwks, out = keydir
    rec = Recorder()
    monkeypatch.setattr(signing, "log", rec)
    keyset = KeySet(jwks)
    header = sign(BODY, private(out, f"{A}#1"))
    jwks.write_text('{"keys": [{"kty": "RSA"}]}')
    for _ in range(3):  # a watcher calls this every few seconds
        assert keyset.reload_if_changed() is False
    keyset.verify(BODY, header, A)
    assert [(lvl, ev) for lvl, ev, _ in rec.lines] == [("warning", "keys_reload_failed")]
    assert "keys[0]" in rec.lines[0][2]["error"] and str(jwks) in rec.lines[0][2]["error"]
    jwks.unlink()  # gone: reported once too, the old set still in force
    assert keyset.reload_if_changed() is False
    assert keyset.reload_if_changed() is False
    assert len(rec.lines) == 2
    keyset.verify(BODY, header, A)
    keys.issue(jwks, [A], out.parent / "again")  # back: loaded
    assert keyset.reload_if_changed() is True
    assert rec.lines[-1][1] == "keys_reloaded"


@pytest.mark.parametrize(("content", "field"), [
    ("not json", "invalid JSON"),
    ('{"kids": []}', "keys:"),
    ('{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "5001 03", "x": ""}]}', "kid:"),
    ('{"keys": [{"kty": "RSA", "crv": "Ed25519", "kid": "500103", "x": ""}]}', "kty:"),
    ('{"keys": [{"kty": "OKP", "crv": "X25519", "kid": "500103", "x": ""}]}', "crv:"),
    ('{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "500103", "x": "AAAA"}]}', "x:"),
    ('{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "500103", "x": "x", "d": "y"}]}',
     "d: private key material"),
    ('{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "500103", "alg": "ES256", "x": ""}]}',
     "alg:"),
    ('{"keys": [], "zhida_revoked": "500103#1"}', "zhida_revoked"),
])
def test_bad_key_set_at_startup_is_one_line(tmp_path: Path, content: str, field: str) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(content)
    with pytest.raises(KeysError) as e:
        KeySet(path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message and field in message
    assert isinstance(e.value, ValueError)


def test_missing_key_set_at_startup(tmp_path: Path) -> None:
    with pytest.raises(KeysError, match="no such file"):
        KeySet(tmp_path / "nope.json")


def test_duplicate_kid_refused(keydir: tuple[Path, Path]) -> None:
    jwks, _ = keydir
    data = json.loads(jwks.read_text())
    data["keys"].append(data["keys"][0])
    jwks.write_text(json.dumps(data))
    with pytest.raises(KeysError, match="appears twice"):
        KeySet(jwks)


async def test_sighup_reloads(keydir: tuple[Path, Path]) -> None:
    jwks, out = keydir
    keyset = KeySet(jwks)
    loop = asyncio.get_running_loop()
    signing.install_sighup(loop, keyset)
    try:
        keys.issue(jwks, ["500105"], out)
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if "500105#1" in keyset:
                break
        assert "500105#1" in keyset
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


async def test_watch_reloads_on_change(keydir: tuple[Path, Path]) -> None:
    jwks, _ = keydir
    keyset = KeySet(jwks)
    task = asyncio.create_task(signing.watch(keyset, interval=0.01))
    try:
        keys.revoke(jwks, f"{B}#1")
        for _ in range(100):
            await asyncio.sleep(0.01)
            if f"{B}#1" not in keyset:
                break
        assert f"{B}#1" not in keyset
    finally:
        task.cancel()


# --------------------------------------------------------------------------- commands


def run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="zhida")
    cli_keys.add_commands(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return args.func(args)


def test_cli_issue_rotate_revoke_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    jwks, out = tmp_path / "k" / "jwks.json", tmp_path / "priv"
    flags = ["--jwks", str(jwks)]
    assert run(["keys", "issue", A, B, *flags, "--out", str(out)]) == 0
    assert run(["keys", "rotate", A, *flags, "--out", str(out)]) == 0
    assert run(["keys", "revoke", f"{B}#1", *flags]) == 0
    assert run(["keys", "list", *flags]) == 0
    printed = capsys.readouterr().out
    assert "issued 500103#1" in printed and "issued 500103#2" in printed
    listed = printed.splitlines()[-3:]
    assert [line.split("\t")[0] for line in listed] == [f"{A}#1", f"{A}#2", f"{B}#1"]
    assert listed[-1].endswith("revoked")
    for path in out.iterdir():  # private keys go to files, never to the terminal
        assert json.loads(path.read_text())["d"] not in printed


def test_cli_jwks_default_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ZHIDA_KEYS", str(tmp_path / "env.json"))
    assert run(["keys", "issue", A, "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "env.json").is_file()
    assert run(["keys", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"{A}#1\t")


def test_cli_errors_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    jwks = str(tmp_path / "jwks.json")
    assert run(["keys", "rotate", A, "--jwks", jwks]) == 2
    assert run(["keys", "issue", "50#01", "--jwks", jwks, "--out", str(tmp_path / "p")]) == 2
    assert run(["keys", "revoke", "500103#1", "--jwks", jwks]) == 2
    assert run(["sign", "--key", str(tmp_path / "none.jwk"), "-"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all(line.startswith("zhida: ") for line in err)


def test_cli_sign_file_and_stdin(keydir: tuple[Path, Path], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    jwks, out = keydir
    keyset, key = KeySet(jwks), str(private(out, f"{A}#1"))
    body = tmp_path / "update.json"
    body.write_bytes(BODY)
    assert run(["sign", "--key", key, str(body)]) == 0
    keyset.verify(BODY, capsys.readouterr().out.strip(), A)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(BODY)))
    assert run(["sign", "--key", key]) == 0
    keyset.verify(BODY, capsys.readouterr().out.strip(), A)
    assert run(["sign", "--key", key, str(tmp_path / "missing.json")]) == 2


def test_signer_refuses_bad_key_files(tmp_path: Path) -> None:
    path = tmp_path / "k.jwk"
    path.write_text('{"kty": "OKP", "crv": "Ed25519", "kid": "500103#1", "d": "AAAA"}')
    with pytest.raises(KeysError, match="d: must be a 32-byte"):
        Signer.from_file(path)
    pub = b64url_encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw()).decode()
    d = b64url_encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode()
    path.write_text(json.dumps({"kty": "OKP", "crv": "Ed25519", "kid": A, "d": d, "x": pub}))
    with pytest.raises(KeysError, match="x: does not match"):
        Signer.from_file(path)
