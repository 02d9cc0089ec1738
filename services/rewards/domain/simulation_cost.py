"""What a simulation may cost (SPEC §15, issue 18): its size is estimated before any row is
read, as the user-days its rules evaluate, and refused over the budget with the way to narrow
it — a backtest of 20 rules over a quarter once held a replica for minutes and gigabytes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True, slots=True)
class SimulationCost:
    """(days in range) × (rules evaluated: both versions' when compared) × (users with days)."""

    days: int
    rules: int
    users: int

    @classmethod
    def of(cls, first: date, last: date, rules: int, users: int) -> SimulationCost:
        return cls(max(0, (last - first).days + 1), rules, users)

    @property
    def user_days(self) -> int:
        return self.days * self.rules * self.users

    def over(self, budget: int) -> str | None:
        """Why the simulation is refused under `budget`, None when it fits."""
        if self.user_days <= budget:
            return None
        fits = budget // max(1, self.rules * self.users)
        narrow = (
            f"a range of at most {fits} day(s)"
            if fits >= 1
            else "fewer rules (a version with fewer, or no comparison with `against`)"
        )
        return (
            f"the simulation would evaluate about {self.user_days:,} user-days ({self.days} "
            f"day(s) × {self.rules} rule(s) × ~{self.users:,} users with stored days), over the "
            f"budget of {budget:,} (REWARDS_SIMULATION_MAX_USER_DAYS): narrow it — {narrow}, "
            "or fewer rules"
        )

    def users_to_refuse(self, budget: int) -> int:
        """The fewest users that take (days × rules) over `budget`: a count may stop there."""
        return budget // max(1, self.days * self.rules) + 1
