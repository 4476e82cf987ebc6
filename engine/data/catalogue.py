"""Categories of complaints and kinds of sensor alarms, with who owns them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import orjson
from pydantic import BaseModel

from engine.data.topology import Topology

DATA = Path(__file__).parent / "catalogue.json"


class Category(BaseModel):
    code: str
    name: str
    source: Literal["complaint", "sensed"]
    owner: str  # "street", "district", "city" or a department's unit code
    priority: Literal["urgent", "normal"]


class Catalogue:
    def __init__(self, categories: list[Category]) -> None:
        self.by_code = {c.code: c for c in categories}

    @classmethod
    def load(cls, path: Path | str | None = None) -> Catalogue:
        data = orjson.loads(Path(path or DATA).read_bytes())
        return cls([Category(**c) for c in data["categories"]])

    def get(self, code: str, source: str) -> Category | None:
        c = self.by_code.get(code)
        return c if c is not None and c.source == source else None

    def codes(self, source: str) -> list[str]:
        return [c.code for c in self.by_code.values() if c.source == source]

    def check_owners(self, topology: Topology) -> None:
        for c in self.by_code.values():
            if c.owner not in ("street", "district", "city") and c.owner not in topology:
                raise ValueError(f"category {c.code}: owner {c.owner} is not a known unit")

    def as_json(self) -> list[dict]:
        return [c.model_dump() for c in self.by_code.values()]
