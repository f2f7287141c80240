"""The statistics rule every verdict of the road goes through.

Each measurement is repeated over seeds (different initial weights and data
order). For two groups of values a and b, the difference of their means
counts only when it is larger than both

* twice its standard error, se = √(se_a² + se_b²), se_x = std(x) / √n_x
  (sample standard deviation, n − 1 in the denominator), and
* a floor ``min_effect`` below which differences are noise anyway: for
  losses 0.05 nats, the run-to-run variation Kaplan et al. (2020) report.

Otherwise the two are a *tie* at this budget. A single seed has no standard
error; its difference must then clear the floor alone, and the verdict says
``n = 1``.

    c = compare("lstm", [1.61, 1.63, 1.60], "rnn", [1.75, 1.71, 1.74])
    c.winner        # 'lstm' (lower is better by default)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LOSS_EFFECT", "mean_se", "Comparison", "compare", "best_of"]

LOSS_EFFECT = 0.05      # nats: the smallest loss difference the road calls real


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value; NaN for none).

    ``None`` (not measured) is left out; a NaN (a diverged run) makes both NaN, so a
    failed seed can never be dropped quietly from a mean, and ``compare`` calls
    nothing a win that involves it."""
    xs = [float(v) for v in values if v is not None]
    if not xs or any(math.isnan(x) for x in xs):
        return math.nan, math.nan
    m = sum(xs) / len(xs)
    if len(xs) == 1:
        return m, 0.0
    var = sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
    return m, math.sqrt(var / len(xs))


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    mean_a: float
    mean_b: float
    se: float             # standard error of the difference
    winner: str | None    # a, b, or None for a tie
    lower_is_better: bool
    min_effect: float

    @property
    def diff(self) -> float:
        """mean_a − mean_b."""
        return self.mean_a - self.mean_b

    def describe(self, spec: str = ".3f") -> str:
        """e.g. 'lstm 1.613 vs rnn 1.733: lstm better by 0.120 ± 0.018 (2 se)'."""
        head = f"{self.a} {self.mean_a:{spec}} vs {self.b} {self.mean_b:{spec}}"
        gap = f"{abs(self.diff):{spec}} ± {2 * self.se:{spec}} (2 se)"
        if self.winner is None:
            return f"{head}: a tie (difference {gap}, needs > 2 se and > {self.min_effect:g})"
        return f"{head}: {self.winner} better by {gap}"


def compare(a: str, values_a: Sequence[float], b: str, values_b: Sequence[float], *,
            lower_is_better: bool = True, min_effect: float = LOSS_EFFECT) -> Comparison:
    """Apply the rule to two groups of seeds; see the module docstring."""
    ma, sa = mean_se(values_a)
    mb, sb = mean_se(values_b)
    se = math.sqrt(sa ** 2 + sb ** 2) if not (math.isnan(sa) or math.isnan(sb)) else math.nan
    winner = None
    if not (math.isnan(ma) or math.isnan(mb) or math.isnan(se)):
        d = ma - mb
        if abs(d) > 2 * se and abs(d) > min_effect:
            a_wins = d < 0 if lower_is_better else d > 0
            winner = a if a_wins else b
    return Comparison(a, b, ma, mb, se, winner, lower_is_better, min_effect)


def best_of(groups: dict[str, Sequence[float]], *, lower_is_better: bool = True,
            min_effect: float = LOSS_EFFECT) -> tuple[str | None, list[str]]:
    """The group with the best mean, and the groups it does not beat by the rule
    (ties with the best, itself included). The first element is None when no
    group has a value."""
    means = {k: mean_se(v)[0] for k, v in groups.items()}
    means = {k: m for k, m in means.items() if not math.isnan(m)}
    if not means:
        return None, []
    best = (min if lower_is_better else max)(means, key=means.get)
    tied = [k for k in means if k == best or compare(
        best, groups[best], k, groups[k], lower_is_better=lower_is_better,
        min_effect=min_effect).winner is None]
    return best, tied
