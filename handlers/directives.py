"""``zhida.intake.directives`` → issue commands, keyed by directive id.

Only the decoding happens here: scope, targets and the fan-out are the directive's own rules
(engine/core/directive.py), decided by the single writer, so a repeated ``directive_id`` is
a counted duplicate however often it is sent.
"""

from __future__ import annotations

from datetime import datetime

from engine.core.model import Command, IssueDirective, Origin
from engine.runtime import intake
from engine.runtime.app import Engine
from schemas.codec import decode
from schemas.inbound import Directive


def to_command(raw: bytes | None, origin: Origin, now: datetime) -> Command:
    d = decode(Directive, raw)
    return Command(aggregate=d.directive_id, at=now, body=IssueDirective(directive=d),
                   origin=origin)


def register(engine: Engine) -> None:
    intake.register(engine, "directives", to_command, signed_by=issuer)


def issuer(cmd: Command) -> str:
    """The unit that must have signed a directive: its ``issuer``."""
    assert isinstance(cmd.body, IssueDirective)
    return cmd.body.directive.issuer
