"""Key management for signed messages: issue, rotate, revoke units' Ed25519 keys.

The JWKS (public keys, what the worker's ``--keys`` reads) and the private keys are separate
files. A private key is a JWK (RFC 7517/8037: ``kty`` OKP, ``crv`` Ed25519, ``d``, ``x``,
``kid``) rather than PEM, so the key id travels with the key and ``zhida sign --key FILE`` needs
nothing else. It is written to ``<out>/<unit>.<version>.jwk`` (``500103.1.jwk`` for kid
``500103#1``: a ``#`` in a file name trips shells and URLs), created with ``O_EXCL`` and mode
0600 in one call, so it is never readable by others, not even for an instant, and never
overwritten. The unit keeps that file; the engine only needs the JWKS.

Versions: ``issue`` makes ``<unit>#1``; ``rotate`` adds ``<unit>#<n+1>`` while the old key stays
accepted until ``revoke``; revoked kids are listed in the JWKS member ``zhida_revoked`` (other
JWKS readers ignore unknown members, RFC 7517 §5) so a version number is never reused and a
refusal can say "revoked". Every JWKS change is written to a temporary file in the same folder,
flushed and renamed over the old one: a reader (the worker's reload) sees the old set or the
new one, never half a file. No function here logs or prints key material.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.runtime.signing import (
    ALG,
    KID,
    REVOKED_MEMBER,
    KeysError,
    b64url_encode,
    kid_unit,
    kid_version,
    public_keys,
    read_jwks,
)

PRIVATE_MODE = 0o600
DIR_MODE = 0o700


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One row of ``zhida keys list``: public facts only."""

    kid: str
    unit: str
    version: int
    thumbprint: str  # RFC 7638 SHA-256 thumbprint, base64url: compare keys by voice or mail
    revoked: bool = False


def private_key_path(out_dir: str | os.PathLike[str], kid: str) -> Path:
    """``<out>/<unit>.<version>.jwk`` for ``<unit>#<version>``."""
    return Path(out_dir) / f"{kid_unit(kid)}.{kid_version(kid)}.jwk"


def thumbprint(x: str) -> str:
    """RFC 7638 JWK thumbprint of an Ed25519 public key (RFC 8037 §2 member order)."""
    canonical = orjson.dumps({"crv": "Ed25519", "kty": "OKP", "x": x})
    return b64url_encode(hashlib.sha256(canonical).digest()).decode()


def issue(jwks_path: str | os.PathLike[str], units: Iterable[str],
          out_dir: str | os.PathLike[str]) -> list[Path]:
    """A new key pair ``<unit>#1`` per unit; returns the private key files written.

    The JWKS is created if missing. A unit that already has a key is refused (rotate it).
    Nothing is written unless every unit can be issued.
    """
    jwks_path = Path(jwks_path)
    data = _load_or_new(jwks_path)
    wanted = list(dict.fromkeys(units))
    if not wanted:
        raise KeysError("issue: no unit given")
    for unit in wanted:
        _check_unit(unit)
        existing = [*_kids_of(data, unit), *(f"{k} (revoked)" for k in _revoked_of(data, unit))]
        if existing:
            raise KeysError(f"key set {jwks_path}: unit {unit} already has "
                            f"{', '.join(existing)}: use rotate")
    return _add_keys(jwks_path, data, [(u, 1) for u in wanted], Path(out_dir))


def rotate(jwks_path: str | os.PathLike[str], unit: str, out_dir: str | os.PathLike[str]
           ) -> Path:
    """Add ``<unit>#<n+1>``; the unit's older keys stay accepted until revoked."""
    jwks_path = Path(jwks_path)
    _check_unit(unit)
    data = _load(jwks_path)
    known = [*_kids_of(data, unit), *_revoked_of(data, unit)]
    if not known:
        raise KeysError(f"key set {jwks_path}: unit {unit} has no key: use issue")
    version = max(kid_version(k) for k in known) + 1
    return _add_keys(jwks_path, data, [(unit, version)], Path(out_dir))[0]


def revoke(jwks_path: str | os.PathLike[str], kid: str) -> None:
    """Remove ``kid`` from the JWKS; a worker refuses it after its next reload."""
    jwks_path = Path(jwks_path)
    data = _load(jwks_path)
    keys = data["keys"]
    kept = [k for k in keys if k.get("kid") != kid]
    if len(kept) == len(keys):
        why = "already revoked" if kid in data.get(REVOKED_MEMBER, []) else "no key with kid"
        raise KeysError(f"key set {jwks_path}: {why} {kid}")
    data["keys"] = kept
    data[REVOKED_MEMBER] = sorted({*data.get(REVOKED_MEMBER, []), kid})
    write_jwks(jwks_path, data)


def list_keys(jwks_path: str | os.PathLike[str]) -> list[KeyInfo]:
    """Every key of the set (then the revoked kids), sorted by unit and version."""
    jwks_path = Path(jwks_path)
    data = _load(jwks_path)
    rows = [KeyInfo(k["kid"], kid_unit(k["kid"]), kid_version(k["kid"]), thumbprint(k["x"]))
            for k in data["keys"]]
    rows += [KeyInfo(kid, kid_unit(kid), kid_version(kid), "", revoked=True)
             for kid in data.get(REVOKED_MEMBER, [])]
    return sorted(rows, key=lambda r: (r.unit, r.version, r.revoked))


def write_jwks(path: Path, data: dict[str, Any]) -> None:
    """Atomic replace: temporary file in the same folder, fsync, rename, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # public keys: the worker may run as another user
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_private_key(path: Path, jwk: dict[str, Any]) -> None:
    """Create ``path`` with mode 0600 in the same call (``O_EXCL``: never overwrite a key)."""
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        raise KeysError(f"key file {path}: already exists (not overwritten)") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps(jwk) + b"\n")
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


# --------------------------------------------------------------------------- internals


def _new_pair(kid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(public JWK, private JWK) for a fresh Ed25519 key."""
    key = Ed25519PrivateKey.generate()
    x = b64url_encode(key.public_key().public_bytes_raw()).decode()
    public = {"kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig", "alg": ALG, "x": x}
    d = b64url_encode(key.private_bytes_raw()).decode()
    return public, {**public, "d": d}


def _add_keys(jwks_path: Path, data: dict[str, Any], versions: list[tuple[str, int]],
              out_dir: Path) -> list[Path]:
    """Write the private keys first (all or none), then the JWKS that makes them count."""
    pairs = [_new_pair(f"{unit}#{version}") for unit, version in versions]
    paths = [private_key_path(out_dir, public["kid"]) for public, _ in pairs]
    for path in paths:
        if path.exists():
            raise KeysError(f"key file {path}: already exists (not overwritten)")
    written: list[Path] = []
    try:
        for path, (_, private) in zip(paths, pairs, strict=True):
            write_private_key(path, private)
            written.append(path)
        data["keys"] = [*data["keys"], *(public for public, _ in pairs)]
        write_jwks(jwks_path, data)
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    return paths


def _check_unit(unit: str) -> None:
    if "#" in unit or not KID.fullmatch(unit):
        raise KeysError(f"unit {unit!r}: not a unit code (letters, digits, '-' and '_')")


def _kids_of(data: dict[str, Any], unit: str) -> list[str]:
    return sorted((k["kid"] for k in data["keys"] if kid_unit(k["kid"]) == unit),
                  key=kid_version)


def _revoked_of(data: dict[str, Any], unit: str) -> list[str]:
    return [k for k in data.get(REVOKED_MEMBER, []) if kid_unit(k) == unit]


def _load(path: Path) -> dict[str, Any]:
    """The JWKS, every key checked as the worker would (a bad set is not edited further)."""
    data = read_jwks(path)
    public_keys(path, data)
    return data


def _load_or_new(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"keys": []}
    return _load(path)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be opened
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
