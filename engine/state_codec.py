"""faust codec that writes CaseState to the changelog as JSON and reads it back."""

from __future__ import annotations

from typing import Any

import orjson
from faust.serializers import codecs

from engine.core.model import CaseState

NAME = "zhida_case_state"


class CaseStateCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return orjson.dumps(obj.model_dump(mode="python"))

    def _loads(self, s: bytes) -> Any:
        return CaseState.model_validate(orjson.loads(s))


def register() -> None:
    codecs.register(NAME, CaseStateCodec())
