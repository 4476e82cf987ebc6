"""Signed messages (CONTRACT.md "Signed messages"): which unit really sent an update.

Kafka ACLs grant per topic, so any system allowed to write ``zhida.unit.updates`` could claim
to be any unit. With a key set every update and directive carries, in the ``zhida-signature``
header, a JWS with detached payload (RFC 7515 Appendix F) over the message value's exact bytes,
made with the Ed25519 key of its ``actor`` / ``issuer``:

    BASE64URL(protected) ".." BASE64URL(signature)       protected = {"alg":"EdDSA","kid":K}
    signing input = BASE64URL(protected) "." BASE64URL(value)

Library: ``cryptography`` (PyCA). It is what every Python JOSE library (joserfc, jwcrypto,
PyJWT) calls for Ed25519 anyway, it is maintained by the PyCA team with OpenSSL underneath and
wheels for every platform we run on. The contract admits exactly one algorithm and one key
type, so the JOSE part left to us is a compact-form split, base64url and a two-member JSON
header: a few lines checked here, instead of a general JOSE layer that negotiates algorithms
(the classic ``alg`` confusion surface) and parses a key object per call. The signature
arithmetic itself is never done here.

Key ids are ``<unit code>`` or ``<unit code>#<version>`` (engine/tools/keys.py issues ``#1``, ``#2``
…). A key set holds public keys only; a private key in it is refused at load.

Reload without a restart: ``KeySet.reload_if_changed()`` (a stat, cheap enough for every few
seconds; ``watch`` runs it) and ``install_sighup(loop, keyset)``. A bad file on reload keeps the
set in force and logs one line; a bad file at start raises ``KeysError`` (one line naming the
file and the field).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from engine.runtime import logs
from schemas.codec import Refused

log = logs.get("zhida.keys")

HEADER = "zhida-signature"
ALG = "EdDSA"
REASON = "unauthorized"
# JWK Set member (RFC 7517 §5: unknown members are ignored by other readers) listing kids that
# were revoked, so a new version never reuses one and a refusal can say "revoked"
REVOKED_MEMBER = "zhida_revoked"
KID = re.compile(r"(?P<unit>[0-9A-Za-z][0-9A-Za-z_-]*)(?:#(?P<version>[1-9][0-9]{0,8}))?")
_B64URL = re.compile(rb"[A-Za-z0-9_-]*")
_PROTECTED_CACHE_MAX = 4096  # parsed protected headers: one per kid in practice
_PROTECTED_CACHED_BYTES = 1024  # a real header is ~60 bytes; a huge one is parsed, not kept
SHOWN = 64  # characters of a kid or unit a refusal's detail repeats (a kid may be ~1 MB)


class KeysError(ValueError):
    """A key set or key file that cannot be used; the message is one line naming the file."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


def b64url_encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64url_decode(text: bytes | str) -> bytes:
    """Strict base64url without padding (RFC 7515 §2): any other character is an error."""
    raw = text.encode("ascii") if isinstance(text, str) else text
    if not _B64URL.fullmatch(raw) or len(raw) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))


def kid_unit(kid: str) -> str:
    """The unit code of a key id (``500103#2`` → ``500103``)."""
    return kid.split("#", 1)[0]


def kid_version(kid: str) -> int:
    """A bare ``<unit>`` kid counts as version 1."""
    _, _, version = kid.partition("#")
    return int(version) if version else 1


# --------------------------------------------------------------------------- key set file


@dataclass(frozen=True, slots=True)
class _Stamp:
    """What ``reload_if_changed`` compares: a rename (atomic write) changes the inode."""

    mtime_ns: int
    size: int
    ino: int

    @classmethod
    def of(cls, path: Path) -> _Stamp:
        st = os.stat(path)
        return cls(st.st_mtime_ns, st.st_size, st.st_ino)


def read_jwks(path: Path) -> dict[str, Any]:
    """The JWK Set as a dict, checked; ``KeysError`` names the file and the field."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise KeysError(f"key set {path}: no such file") from None
    except OSError as e:
        raise KeysError(f"key set {path}: cannot read: {e.strerror or e}") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise KeysError(f"key set {path}: invalid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise KeysError(f"key set {path}: keys: a JWK Set needs a \"keys\" array (RFC 7517 §5)")
    revoked = data.get(REVOKED_MEMBER, [])
    if not isinstance(revoked, list) or not all(isinstance(k, str) for k in revoked):
        raise KeysError(f"key set {path}: {REVOKED_MEMBER}: must be an array of kids")
    return data


def public_keys(path: Path, data: dict[str, Any]) -> dict[str, Ed25519PublicKey]:
    """kid → public key object, every entry checked (cached: built once per load)."""
    out: dict[str, Ed25519PublicKey] = {}
    for i, jwk in enumerate(data["keys"]):
        where = f"key set {path}: keys[{i}]"
        if not isinstance(jwk, dict):
            raise KeysError(f"{where}: not a JSON object")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not KID.fullmatch(kid):
            raise KeysError(f"{where}: kid: must be \"<unit code>\" or \"<unit code>#<version>\","
                            f" got {kid!r}")
        where = f"{where} (kid {kid})"
        if kid in out:
            raise KeysError(f"{where}: kid: appears twice")
        if "d" in jwk:
            raise KeysError(f"{where}: d: private key material in a public key set")
        for field, want in (("kty", "OKP"), ("crv", "Ed25519")):
            if jwk.get(field) != want:
                raise KeysError(f"{where}: {field}: must be {want!r}, got {jwk.get(field)!r}")
        if jwk.get("alg", ALG) != ALG:
            raise KeysError(f"{where}: alg: must be {ALG!r}, got {jwk.get('alg')!r}")
        if jwk.get("use", "sig") != "sig":
            raise KeysError(f"{where}: use: must be 'sig', got {jwk.get('use')!r}")
        try:
            x = b64url_decode(jwk.get("x") or "")
            if len(x) != 32:
                raise ValueError
            out[kid] = Ed25519PublicKey.from_public_bytes(x)
        except (ValueError, TypeError):
            raise KeysError(f"{where}: x: must be 32 bytes in base64url") from None
    return out


# --------------------------------------------------------------------------- verification


def _shown(text: str) -> str:
    """A kid or unit as a detail names it: whole up to ``SHOWN`` characters, else its start
    and its length. The kid pattern has no length limit and a header can be near the
    broker's 1 MB; the detail would repeat it (twice: kid and unit) in the dead letter."""
    if len(text) <= SHOWN:
        return text
    return f"{text[:SHOWN]}… ({len(text)} chars)"


@dataclass(frozen=True, slots=True)
class _Protected:
    alg: str | None
    kid: str | None
    error: str | None  # why the header is malformed, or None


def _parse_protected(segment: bytes) -> _Protected:
    try:
        header = orjson.loads(b64url_decode(segment))
    except (ValueError, orjson.JSONDecodeError):
        return _Protected(None, None, "protected header is not base64url JSON")
    if not isinstance(header, dict):
        return _Protected(None, None, "protected header is not a JSON object")
    alg, kid = header.get("alg"), header.get("kid")
    alg = None if alg is None else alg[:40] if isinstance(alg, str) else repr(alg)[:40]
    if alg is None:
        return _Protected(None, None, "protected header has no alg")
    if "crit" in header:  # RFC 7515 §4.1.11: extensions we do not implement must fail
        return _Protected(alg, None, f"unsupported crit {_shown(repr(header['crit']))}")
    if not isinstance(kid, str) or not kid:
        return _Protected(alg, None, "protected header has no kid")
    if not KID.fullmatch(kid):
        return _Protected(alg, None, f"kid {kid[:40]!r} is not <unit code>[#<version>]")
    return _Protected(alg, kid, None)


_NOTHING = object()  # no failed reload to remember


class KeySet:
    """The units' public keys from a JWKS file; verifies ``zhida-signature`` headers."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Load ``path`` now; a bad file raises ``KeysError`` (refuse to start)."""
        self.path = Path(path)
        try:
            self._stamp: _Stamp | None = _Stamp.of(self.path)  # before reading: no lost edit
        except OSError:
            self._stamp = None  # read_jwks says why
        data = read_jwks(self.path)
        self._keys = public_keys(self.path, data)  # key objects built once per load
        self._revoked = frozenset(data.get(REVOKED_MEMBER, []))
        self._failed: object = _NOTHING  # stamp (None: missing) of a bad file already logged
        self._protected: dict[bytes, _Protected] = {}

    def kids(self) -> list[str]:
        return sorted(self._keys)

    def public_key(self, kid: str) -> Ed25519PublicKey | None:
        return self._keys.get(kid)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def verify(self, value: bytes, header: bytes | str | None, unit: str) -> None:
        """Return if ``header`` is a valid signature of ``value`` by a key of ``unit``.

        Otherwise raise ``Refused("unauthorized", detail)``, the detail saying what failed.
        ``value`` must be the message value exactly as consumed (no re-serialisation), and
        ``unit`` the message's ``actor`` (updates) or ``issuer`` (directives).
        """
        if header is None or len(header) == 0:
            raise Refused(REASON, f"missing {HEADER} header")
        if isinstance(header, str):
            try:
                header = header.encode("ascii")
            except UnicodeEncodeError:
                raise Refused(REASON, f"malformed {HEADER}: not ASCII") from None
        parts = header.strip().split(b".")
        if len(parts) != 3:
            raise Refused(REASON, f"malformed {HEADER}: a JWS has 3 dot-separated parts, "
                                  f"got {len(parts)}")
        segment, payload, sig_b64 = parts
        if payload:
            raise Refused(REASON, f"malformed {HEADER}: the payload must be detached "
                                  "(BASE64URL(header)..BASE64URL(signature))")
        protected = self._protected.get(segment)
        if protected is None:  # every message signed with one key has the same header
            protected = _parse_protected(segment)
            if len(segment) <= _PROTECTED_CACHED_BYTES:  # else 4,096 of them could hold GBs
                if len(self._protected) >= _PROTECTED_CACHE_MAX:
                    self._protected.clear()
                self._protected[segment] = protected
        if protected.alg is not None and protected.alg != ALG:
            raise Refused(REASON, f"alg {protected.alg!r} not accepted: {ALG} only")
        if protected.error is not None or protected.kid is None:
            raise Refused(REASON, f"malformed {HEADER}: {protected.error}")
        kid = protected.kid
        if kid_unit(kid) != unit:
            raise Refused(REASON, f"kid {_shown(kid)} is a key of unit "
                                  f"{_shown(kid_unit(kid))}, not of {_shown(unit)} "
                                  "(the message's unit)")
        key = self._keys.get(kid)
        if key is None:
            why = "revoked" if kid in self._revoked else "not in the key set"
            raise Refused(REASON, f"unknown kid {_shown(kid)} ({why})")
        try:
            signature = b64url_decode(sig_b64)
        except ValueError:
            signature = b""
        if len(signature) != 64:
            raise Refused(REASON, f"malformed {HEADER}: the signature is not 64 bytes "
                                  "in base64url")
        try:
            key.verify(signature, segment + b"." + b64url_encode(value))
        except InvalidSignature:
            raise Refused(REASON, f"bad signature (kid {_shown(kid)}): not made by this key over "
                                  "this body") from None

    def reload(self) -> bool:
        """Load the file again now (SIGHUP); True if a new set is in force.

        A missing or bad file keeps the set in force and logs one line.
        """
        return self._reload(repeat=True)

    def reload_if_changed(self) -> bool:
        """Reload when the file's mtime, size or inode changed; True if a new set is in force.

        One ``stat`` when nothing changed: cheap enough for every few seconds. A bad file is
        logged once per version of it, not at every call.
        """
        try:
            stamp: _Stamp | None = _Stamp.of(self.path)
        except OSError:
            stamp = None
        if stamp == self._stamp or stamp == self._failed:
            return False
        return self._reload(repeat=False)

    def _reload(self, repeat: bool) -> bool:
        stamp: _Stamp | None = None
        try:
            stamp = _Stamp.of(self.path)
            data = read_jwks(self.path)
            keys = public_keys(self.path, data)
        except OSError as e:
            error = f"key set {self.path}: cannot read: {e.strerror or e}"
        except KeysError as e:
            error = str(e)
        else:
            added = sorted(set(keys) - set(self._keys))
            removed = sorted(set(self._keys) - set(keys))
            self._keys = keys
            self._revoked = frozenset(data.get(REVOKED_MEMBER, []))
            self._stamp, self._failed = stamp, _NOTHING
            log.info("keys_reloaded", path=str(self.path), keys=len(keys), added=added,
                     removed=removed)
            return True
        if repeat or stamp != self._failed:
            log.warning("keys_reload_failed", error=error, kept=len(self._keys))
        self._failed = stamp
        return False


def signature_header(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None
                     ) -> bytes | None:
    """The ``zhida-signature`` value from Kafka headers (a list of pairs or a mapping).

    Two such headers are refused: which one was meant cannot be told.
    """
    if not headers:
        return None
    if isinstance(headers, Mapping):
        return headers.get(HEADER)
    found = [v for k, v in headers if k == HEADER]
    if len(found) > 1:
        raise Refused(REASON, f"malformed {HEADER}: the header appears {len(found)} times")
    return found[0] if found else None


def install_sighup(loop: asyncio.AbstractEventLoop, keyset: KeySet) -> None:
    """``kill -HUP <worker>`` reloads the key set (``reload``: a bad file keeps the old)."""
    loop.add_signal_handler(signal.SIGHUP, keyset.reload)


async def watch(keyset: KeySet, interval: float = 5.0) -> None:
    """Run ``reload_if_changed`` every ``interval`` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            keyset.reload_if_changed()
        except Exception:  # never let the watcher die
            log.exception("keys_watch_failed", path=str(keyset.path))


# --------------------------------------------------------------------------- signing (clients)


class Signer:
    """One unit's private key, loaded once; ``sign`` makes the ``zhida-signature`` value.

    For a client sending many messages: ``Signer.from_file(path).sign(value)`` per message
    costs one Ed25519 signature, no file read.
    """

    def __init__(self, kid: str, key: Ed25519PrivateKey) -> None:
        if not KID.fullmatch(kid):
            raise KeysError(f"kid: must be \"<unit code>\" or \"<unit code>#<version>\", "
                            f"got {kid!r}")
        self.kid = kid
        self._key = key
        protected = orjson.dumps({"alg": ALG, "kid": kid})
        self._segment = b64url_encode(protected)

    @property
    def unit(self) -> str:
        return kid_unit(self.kid)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Signer:
        """A private JWK file as ``zhida keys issue`` writes it (``kty`` OKP, ``d``, ``kid``)."""
        path = Path(path)
        try:
            jwk = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise KeysError(f"key file {path}: no such file") from None
        except OSError as e:
            raise KeysError(f"key file {path}: cannot read: {e.strerror or e}") from None
        except orjson.JSONDecodeError:
            raise KeysError(f"key file {path}: not a JSON private key (JWK)") from None
        if not isinstance(jwk, dict):
            raise KeysError(f"key file {path}: not a JSON object")
        for field, want in (("kty", "OKP"), ("crv", "Ed25519")):
            if jwk.get(field) != want:
                raise KeysError(f"key file {path}: {field}: must be {want!r}")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not KID.fullmatch(kid):
            raise KeysError(f"key file {path}: kid: missing or not \"<unit>[#<version>]\"")
        try:
            d = b64url_decode(jwk.get("d") or "")
            if len(d) != 32:
                raise ValueError
            key = Ed25519PrivateKey.from_private_bytes(d)
        except (ValueError, TypeError):
            raise KeysError(f"key file {path}: d: must be a 32-byte private key in "
                            "base64url") from None
        x = jwk.get("x")
        if x is not None and b64url_encode(key.public_key().public_bytes_raw()).decode() != x:
            raise KeysError(f"key file {path}: x: does not match the private key d")
        return cls(kid, key)

    def sign(self, value: bytes) -> str:
        """The ``zhida-signature`` header value for a message whose value is ``value``."""
        signature = self._key.sign(self._segment + b"." + b64url_encode(value))
        return (self._segment + b".." + b64url_encode(signature)).decode("ascii")


def sign(value: bytes, private_key_file: str | os.PathLike[str]) -> str:
    """The ``zhida-signature`` header value for ``value``, signed with a unit's key file.

    A district's integration signs the exact bytes it sends as the Kafka message value::

        from engine.runtime.signing import sign
        body = orjson.dumps(update)
        producer.send("zhida.unit.updates", key=case_id.encode(), value=body,
                      headers=[("zhida-signature", sign(body, "500103.1.jwk").encode())])

    Reads the key file on every call; keep a ``Signer`` for many messages.
    """
    return Signer.from_file(private_key_file).sign(value)
