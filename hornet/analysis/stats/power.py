"""Statistical power of a suite's paired comparisons: the smallest difference it could detect, and the seeds needed
to detect a given one (two-sided paired t-test; the noncentral t distribution, no normal approximation).

With n seeds and a standard deviation sd of the per-seed differences, the paired t statistic of a true mean difference
delta follows a noncentral t with n - 1 degrees of freedom and noncentrality delta * sqrt(n) / sd; the test rejects
when |t| exceeds the (1 - alpha / 2) quantile of the central t. Power is the probability that it does.
"""

from __future__ import annotations

import math

from scipy import optimize, stats

__all__ = ["ALPHA", "POWER", "detectable_difference", "paired_power", "seeds_needed"]

ALPHA, POWER = 0.05, 0.8  # the conventional test level and power the reports state


def paired_power(delta: float, sd: float, n: int, *, alpha: float = ALPHA) -> float:
    """Probability that a two-sided paired t-test at ``alpha`` over ``n`` pairs rejects when the true mean difference
    is ``delta`` and the differences' standard deviation is ``sd``."""
    if n < 2 or sd <= 0:
        raise ValueError(f"power needs at least 2 pairs and a positive spread; got n={n}, sd={sd}")
    df = n - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    noncentrality = abs(delta) * math.sqrt(n) / sd
    power = float(stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality))
    if math.isnan(power):  # scipy's noncentral t fails far in the tail (many seeds, large shifts): it is normal there
        power = float(stats.norm.sf(critical - noncentrality) + stats.norm.cdf(-critical - noncentrality))
    return power


def detectable_difference(sd: float, n: int, *, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true mean difference that ``n`` pairs detect with probability ``power`` (same units as ``sd``)."""
    if paired_power(0.0, sd, n, alpha=alpha) >= power:
        return 0.0
    high = 4 * sd / math.sqrt(n)  # noncentrality 4: past power 0.8 from about 6 pairs on
    while paired_power(high, sd, n, alpha=alpha) < power:
        high *= 2
    return float(optimize.brentq(lambda d: paired_power(d, sd, n, alpha=alpha) - power, 0.0, high, xtol=1e-10))


def seeds_needed(
    delta: float, sd: float, *, alpha: float = ALPHA, power: float = POWER, most: int = 10_000
) -> int | None:
    """The fewest pairs (seeds) that detect a true mean difference ``delta`` with probability ``power``; None if more
    than ``most`` would be needed."""
    n = 2
    while n <= most:
        if paired_power(delta, sd, n, alpha=alpha) >= power:
            return n
        n = n + 1 if n < 64 else n * 2  # exact below 64 seeds; beyond, a bound to the next power of two
    return None
