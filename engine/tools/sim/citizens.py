"""Simulated complainants: they read ``zhida.citizen.notifications`` and rate resolved cases.

On a ``kind=resolved`` notice that asks for a rating, after a simulated delay (minutes to a
few hours, most within half an hour), about 70 % answer satisfied, 15 % basically satisfied,
7 % unsatisfied (the engine reopens the case) and 8 % never answer (the engine closes it as
unrated when the feedback window runs out). Ratings go to ``zhida.citizen.feedback``, keyed
by case id.
"""

from __future__ import annotations

import random
from typing import Any

from engine.tools.sim import Listener, Scheduler, Sender, SimStats, now_iso
from topics import TopicNames

MINUTE = 60.0
ANSWERS: tuple[tuple[str | None, float], ...] = (
    ("satisfied", 0.70), ("basically_satisfied", 0.15), ("unsatisfied", 0.07), (None, 0.08),
)
DELAY = (2 * MINUTE, 15 * MINUTE, 180 * MINUTE)  # low, mode, high (triangular)


class Citizens(Listener):
    def __init__(self, bootstrap: str, names: TopicNames, sender: Sender, scheduler: Scheduler,
                 stats: SimStats, *, speed: float = 60.0, seed: int = 0) -> None:
        super().__init__(bootstrap, [names.notifications], stats)
        self.names = names
        self.sender = sender
        self.scheduler = scheduler
        self.speed = max(speed, 1e-9)
        self.rng = random.Random(f"citizens-{seed}")
        self._asked: set[tuple[str, str]] = set()  # (case, time of the resolution)

    def on_message(self, topic: str, value: dict[str, Any]) -> None:
        self.on_notification(value)

    def on_notification(self, notice: dict[str, Any]) -> None:
        kind = str(notice.get("kind"))
        self.stats.notifications[kind] += 1
        if kind != "resolved" or not notice.get("ask_rating"):
            return
        case_id = notice["case_id"]
        # one answer per resolution: merged complaints get one notice each, and a copy may
        # be redelivered; the resolution is told apart by its time
        asked = (case_id, str(notice.get("at")))
        if asked in self._asked:
            return
        self._asked.add(asked)
        rating = self._answer()
        if rating is None:
            self.stats.unanswered += 1
            return
        delay = self.rng.triangular(DELAY[0], DELAY[2], DELAY[1]) / self.speed
        feedback_id = f"{notice.get('notification_id') or case_id}:rating"
        self.scheduler.schedule(f"rate:{case_id}", delay,
                                lambda: self._rate(case_id, feedback_id, rating))

    def _answer(self) -> str | None:
        r = self.rng.random()
        for rating, share in ANSWERS:
            if r < share:
                return rating
            r -= share
        return None

    async def _rate(self, case_id: str, feedback_id: str, rating: str) -> None:
        await self.sender.send(self.names.citizen_feedback, case_id, {
            "feedback_id": feedback_id, "case_id": case_id, "rating": rating, "at": now_iso(),
        })
        self.stats.ratings[rating] += 1
