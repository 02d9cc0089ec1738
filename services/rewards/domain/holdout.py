"""Holdouts (SPEC §12): a share of users is evaluated but never rewarded, so a report can say
what the campaign changed.

Membership: a user is held out when HMAC-SHA256(key = the campaign's holdout seed, message =
the user id), read as a 256-bit big-endian number, falls in the lowest `percent` of the range:
`int(digest) * 100 < percent * 2**256`. Only SHA-256(seed) is published while the campaign
runs (store/holdouts.py); once it has ended the seed is revealed and anyone can recompute who
was held out. A simulation applies the committed seed too, or a public stand-in for a campaign
that has none yet (`SimulatedHoldout`).

Uplift: the chosen metric's mean among treated users minus its mean among held-out users,
with a 95% Welch confidence interval (unequal variances, Welch–Satterthwaite degrees of
freedom; the t quantile computed here from the incomplete beta function, no SciPy).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

HELD_OUT = "held_out"
MAX_HOLDOUT_PERCENT = 50
_RANGE = 2**256


def held_out(seed: str, user_id: str, percent: int) -> bool:
    """Whether `user_id` is in the campaign's holdout (exact, in integers)."""
    if percent <= 0:
        return False
    digest = hmac.new(seed.encode(), user_id.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest, "big") * 100 < percent * _RANGE


@dataclass(frozen=True, slots=True)
class Holdout:
    """A campaign's holdout as settlement and real-time rules apply it."""

    seed: str
    percent: int

    def holds(self, user_id: str) -> bool:
        return held_out(self.seed, user_id, self.percent)


# -- in a simulation ---------------------------------------------------------------------------

COMMITTED = "committed"  # the campaign's own seed: the users live evaluation holds out
STAND_IN = "stand_in"  # no seed yet (never activated): an example of who a holdout takes


def stand_in_seed(campaign_id: str) -> str:
    """What a simulation holds out with before the campaign's seed is committed: fixed, so two
    simulations of a draft agree, and public (SHA-256 of `simulation:holdout:<campaign id>`,
    hex) — the seed chosen at activation will hold out other users."""
    return hashlib.sha256(f"simulation:holdout:{campaign_id}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SimulatedHoldout:
    """The holdout a simulation applies and whose seed it is (`COMMITTED` or `STAND_IN`)."""

    holdout: Holdout
    seed_source: str  # COMMITTED or STAND_IN

    @classmethod
    def of(cls, campaign_id: str, committed: str | None, percent: int) -> SimulatedHoldout | None:
        """With the campaign's committed seed when it has one; None without a holdout."""
        if percent <= 0:
            return None
        if committed is None:
            return cls(Holdout(stand_in_seed(campaign_id), percent), STAND_IN)
        return cls(Holdout(committed, percent), COMMITTED)

    def holds(self, user_id: str) -> bool:
        return self.holdout.holds(user_id)

    def document(self) -> dict[str, Any]:
        """Percent, which seed, and its SHA-256 (public either way: never the committed seed)."""
        return {
            "percent": self.holdout.percent,
            "seed_source": self.seed_source,
            "seed_sha256": hashlib.sha256(self.holdout.seed.encode()).hexdigest(),
        }


# -- uplift -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Uplift:
    """Treated minus held out: means, difference, its 95% CI (Welch), group sizes."""

    n_treated: int
    n_held_out: int
    mean_treated: float | None
    mean_held_out: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    degrees_of_freedom: float | None

    @property
    def significant(self) -> bool:
        return (
            self.ci_low is not None
            and self.ci_high is not None
            and (self.ci_low > 0 or self.ci_high < 0)
        )


@dataclass(frozen=True, slots=True)
class GroupStats:
    """A group's size, mean and sample variance (None when n is too small to have one)."""

    n: int
    mean: float | None
    variance: float | None

    @classmethod
    def of(cls, xs: Sequence[float]) -> GroupStats:
        n = len(xs)
        if n == 0:
            return cls(0, None, None)
        mean = math.fsum(xs) / n
        var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1) if n > 1 else None
        return cls(n, mean, var)


def uplift(treated: Sequence[float], control: Sequence[float], level: float = 0.95) -> Uplift:
    """Welch's interval for mean(treated) − mean(control); None where n < 2 makes it unknown."""
    return uplift_of(GroupStats.of(treated), GroupStats.of(control), level)


def uplift_of(t: GroupStats, c: GroupStats, level: float = 0.95) -> Uplift:
    """The same from each group's size, mean and variance (as a database computes them)."""
    diff = None if t.mean is None or c.mean is None else t.mean - c.mean
    if diff is None or t.variance is None or c.variance is None or t.n < 2 or c.n < 2:
        return Uplift(t.n, c.n, t.mean, c.mean, diff, None, None, None)
    vt, vc = t.variance / t.n, c.variance / c.n
    se2 = vt + vc
    if se2 == 0:
        return Uplift(t.n, c.n, t.mean, c.mean, diff, diff, diff, math.inf)
    df = se2**2 / (vt**2 / (t.n - 1) + vc**2 / (c.n - 1))
    half = t_quantile(0.5 + level / 2, df) * math.sqrt(se2)
    return Uplift(t.n, c.n, t.mean, c.mean, diff, diff - half, diff + half, df)


def t_quantile(p: float, df: float) -> float:
    """The p-quantile (p > 0.5) of Student's t with `df` degrees of freedom, by bisection."""
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


def _t_cdf(t: float, df: float) -> float:
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2, 0.5, x)
    return 1 - tail if t >= 0 else tail


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) (continued fraction, Lentz)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    ln_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(ln_front + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1) / (a + b + 2):
        return 1 - front * _beta_cf(b, a, 1 - x) / b
    return front * _beta_cf(a, b, x) / a


def _beta_cf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 400):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + num * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    return f
