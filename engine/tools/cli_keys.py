"""``zhida keys issue|rotate|revoke|list`` and ``zhida sign``: the signed-messages commands.

Registered by engine/tools/cli.py through ``add_commands(sub)``. Each command is a function of the
parsed arguments returning an exit code; a problem is one line on stderr and exit 2, no
traceback. Private keys are written to files only, never printed (``issue``/``rotate`` print
their paths and the public key ids).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from engine.runtime import signing
from engine.runtime.signing import KeysError
from engine.tools import keys

DEFAULT_JWKS = Path("var/keys/jwks.json")
DEFAULT_OUT = Path("var/keys/private")
ENV_JWKS = "ZHIDA_KEYS"


def default_jwks() -> Path:
    """``$ZHIDA_KEYS`` (the file the worker's ``--keys`` reads), else var/keys/jwks.json."""
    return Path(os.environ.get(ENV_JWKS) or DEFAULT_JWKS)


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``keys`` (with its sub-commands) and ``sign`` to the ``zhida`` sub-parsers."""
    k = sub.add_parser("keys", help="issue, rotate, revoke and list the units' signing keys",
                       description=keys.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ksub = k.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")

    p = ksub.add_parser("issue", help="a new key pair UNIT#1 per unit")
    p.add_argument("units", nargs="+", metavar="UNIT", help="unit codes, e.g. 500103 500103001")
    _jwks_flag(p)
    _out_flag(p)
    p.set_defaults(func=cmd_issue)

    p = ksub.add_parser("rotate", help="add UNIT#<n+1>; older versions stay until revoked")
    p.add_argument("unit", metavar="UNIT", help="unit code")
    _jwks_flag(p)
    _out_flag(p)
    p.set_defaults(func=cmd_rotate)

    p = ksub.add_parser("revoke", help="remove a key (KID, e.g. 500103#1) from the key set")
    p.add_argument("kid", metavar="KID", help="key id: <unit> or <unit>#<version>")
    _jwks_flag(p)
    p.set_defaults(func=cmd_revoke)

    p = ksub.add_parser("list", help="every key id with its RFC 7638 thumbprint")
    _jwks_flag(p)
    p.set_defaults(func=cmd_list)

    s = sub.add_parser(
        "sign", help="print the zhida-signature header value for a message body",
        description="Sign the exact bytes of a message value (a file, or stdin with '-') and "
                    "print the zhida-signature header value: a JWS with detached payload "
                    "(CONTRACT.md \"Signed messages\"). Send the bytes unchanged as the Kafka "
                    "message value and this line as the header.")
    s.add_argument("--key", required=True, type=Path, metavar="FILE",
                   help="the unit's private key file (a JWK from 'zhida keys issue', "
                        "e.g. var/keys/private/500103.1.jwk); no default")
    s.add_argument("path", nargs="?", default="-", metavar="PATH",
                   help="the message body to sign; '-' (the default) reads stdin")
    s.set_defaults(func=cmd_sign)


def _jwks_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jwks", type=Path, default=None, metavar="FILE",
                   help=f"the key set (JWKS) the worker reads with --keys; default "
                        f"${ENV_JWKS}, else {DEFAULT_JWKS}")


def _out_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                   help=f"folder for the private key files (<unit>.<version>.jwk, mode 0600; "
                        f"created 0700); default {DEFAULT_OUT}")


def _fail(message: str) -> int:
    print(f"zhida: {' '.join(message.split())}", file=sys.stderr)
    return 2


def _jwks(args: argparse.Namespace) -> Path:
    return args.jwks or default_jwks()


def cmd_issue(args: argparse.Namespace) -> int:
    try:
        written = keys.issue(_jwks(args), args.units, args.out)
    except (KeysError, OSError) as e:
        return _fail(str(e))
    for path in written:
        print(f"issued {_kid_of(path)}: private key {path} (give it to the unit; mode 0600)")
    print(f"key set {_jwks(args)}: reload the worker (SIGHUP) to accept the new keys")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    try:
        path = keys.rotate(_jwks(args), args.unit, args.out)
    except (KeysError, OSError) as e:
        return _fail(str(e))
    print(f"issued {_kid_of(path)}: private key {path}; older keys of {args.unit} stay "
          "accepted until revoked")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    try:
        keys.revoke(_jwks(args), args.kid)
    except (KeysError, OSError) as e:
        return _fail(str(e))
    print(f"revoked {args.kid} in {_jwks(args)}: refused once the worker reloads")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    try:
        rows = keys.list_keys(_jwks(args))
    except (KeysError, OSError) as e:
        return _fail(str(e))
    for r in rows:
        print(f"{r.kid}\trevoked" if r.revoked else f"{r.kid}\t{r.thumbprint}")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    try:
        signer = signing.Signer.from_file(args.key)
        body = sys.stdin.buffer.read() if args.path == "-" else Path(args.path).read_bytes()
    except KeysError as e:
        return _fail(str(e))
    except OSError as e:
        return _fail(f"{args.path}: cannot read: {e.strerror or e}")
    print(signer.sign(body))
    return 0


def _kid_of(path: Path) -> str:
    """``500103.2.jwk`` → ``500103#2`` (the file names keys.private_key_path makes)."""
    unit, _, version = path.name.removesuffix(".jwk").rpartition(".")
    return f"{unit}#{version}"
