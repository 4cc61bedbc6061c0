"""The benchmark's dataset sizes (bench/run.py --size S|M|L).

M is the issue's reference size; L is five times M (the 1,200-control framework stays one framework
of 1,200: it is a page, not a total); S is CI-size and builds in well under a minute.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Size:
    name: str
    scale: float  # bench/datagen.py's: 10,000 controls, 10,000 checks, 1,000,000 results at 1
    big_framework: int  # controls in framework 00
    evidence: int
    audit: int  # audit entries over audit_log.MONTHS months
    users: int
    result_months: int = 4
    duration: float = 10.0  # seconds per page per round
    rounds: int = 2

    def describe(self) -> str:
        return (f"{round(10_000 * self.scale):,} controls (one framework of {self.big_framework:,}),"
                f" {round(1_000_000 * self.scale):,} results, {self.evidence:,} evidence, {self.audit:,} audit"
                f" entries, {self.users:,} users")


SIZES = {
    "S": Size("S", scale=0.1, big_framework=300, evidence=5_000, audit=200_000, users=500,
              duration=3.0, rounds=1),
    "M": Size("M", scale=1.0, big_framework=1_200, evidence=50_000, audit=10_000_000, users=500),
    "L": Size("L", scale=5.0, big_framework=1_200, evidence=250_000, audit=50_000_000, users=2_500),
}
