"""SLA policy: stage deadlines by priority and category, return cap, warning fraction."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, Field, TypeAdapter

DATA = Path(__file__).parent / "data" / "policy.toml"
STAGES = ("ack", "resolve", "feedback")
_duration = TypeAdapter(timedelta)


class Policy(BaseModel):
    max_returns: int = Field(default=2, ge=0)
    warn_fraction: float = Field(default=0.8, gt=0, lt=1)
    stages: dict[str, dict[str, timedelta]]
    categories: dict[str, dict[str, timedelta]] = {}

    @classmethod
    def load(cls, path: Path | str | None = None) -> Policy:
        raw = tomllib.loads(Path(path or DATA).read_text(encoding="utf-8"))
        head = raw.get("policy", {})

        def durations(table: dict) -> dict[str, timedelta]:
            return {k: _duration.validate_python(v) for k, v in table.items()}

        policy = cls(
            max_returns=head.get("max_returns", 2),
            warn_fraction=head.get("warn_fraction", 0.8),
            stages={p: durations(t) for p, t in raw.get("stages", {}).items()},
            categories={c: durations(t) for c, t in raw.get("categories", {}).items()},
        )
        for prio in ("normal", "urgent"):
            missing = [s for s in STAGES if s not in policy.stages.get(prio, {})]
            if missing:
                raise ValueError(f"policy: stages.{prio} lacks {', '.join(missing)}")
        return policy

    def deadline(self, category: str, priority: str, stage: str) -> timedelta:
        override = self.categories.get(category, {}).get(stage)
        return override if override is not None else self.stages[priority][stage]
