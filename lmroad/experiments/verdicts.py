"""Verdicts on the seed document's claims, computed from the road's numbers.

Each function takes plain numbers (one value per seed) and returns a
``Verdict``: the claim, where it comes from, what this run measured, and one
of three outcomes under the rule of ``stats.py``:

    consistent      the numbers agree with the claim beyond the noise
    contradicted    the numbers go against it beyond the noise
    not settled     the difference is within the noise (or not measured)

They take no report objects, so unit tests can feed them synthetic results.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .stats import LOSS_EFFECT, compare, mean_se

__all__ = ["Verdict", "CONSISTENT", "CONTRADICTED", "NOT_SETTLED", "claim_best", "claim_task",
           "claim_gradients", "claim_context", "solved_distance"]

CONSISTENT, CONTRADICTED, NOT_SETTLED = "consistent", "contradicted", "not settled"
GRADIENT_EFFECT = 0.3      # log10 units: a factor of 2 in gradient norm


@dataclass(frozen=True)
class Verdict:
    claim: str
    source: str
    measured: str
    verdict: str


def claim_best(claim: str, source: str, champion: str, groups: dict[str, Sequence[float]], *,
               lower_is_better: bool = True, min_effect: float = LOSS_EFFECT, spec: str = ".3f") -> Verdict:
    """"``champion`` is better than every other group": consistent if it beats each
    by the rule, contradicted if any other beats it, not settled otherwise."""
    if champion not in groups or len(groups) < 2:
        return Verdict(claim, source, f"{champion} was not measured against another model", NOT_SETTLED)
    comps = [compare(champion, groups[champion], other, groups[other], lower_is_better=lower_is_better,
                     min_effect=min_effect) for other in groups if other != champion]
    measured = "; ".join(c.describe(spec) for c in comps)
    if any(c.winner not in (None, champion) for c in comps):
        return Verdict(claim, source, measured, CONTRADICTED)
    if all(c.winner == champion for c in comps):
        return Verdict(claim, source, measured, CONSISTENT)
    return Verdict(claim, source, measured, NOT_SETTLED)


def claim_task(claim: str, source: str, champion: str, groups: dict[str, Sequence[float]], baseline: float,
               *, lower_is_better: bool = True, min_effect: float, spec: str = ".3f") -> Verdict:
    """``claim_best`` on a task with a baseline: when no model beats the baseline by
    ``min_effect``, none learned the task within the budget, and the claim is not
    settled by it (a tie at the baseline says nothing about memory)."""
    learned = [a for a, v in groups.items() if v and (
        mean_se(v)[0] < baseline - min_effect if lower_is_better else mean_se(v)[0] > baseline + min_effect)]
    if not learned:
        means = ", ".join(f"{a} {mean_se(v)[0]:{spec}}" for a, v in groups.items())
        measured = (f"no model beat the baseline {baseline:{spec}} by {min_effect:g} within this budget "
                    f"({means}): not learned, so not a test")
        return Verdict(claim, source, measured, NOT_SETTLED)
    return claim_best(claim, source, champion, groups, lower_is_better=lower_is_better,
                      min_effect=min_effect, spec=spec)


def claim_gradients(rnn: Sequence[float], lstm: Sequence[float], distance: int) -> list[Verdict]:
    """FAQ 1, from log10(‖∂L/∂h_{T−d}‖ / ‖∂L/∂h_T‖) at ``distance`` d of trained models, per seed.

    Two claims: the LSTM keeps more gradient than the RNN (*eases* vanishing,
    what the literature says), and the LSTM *solves* it (keeps at least a
    tenth of the gradient at distance d: log10 ratio >= −1, beyond 2 se)."""
    src = "seed FAQ 1; Hochreiter & Schmidhuber 1997, Gers et al. 2000: eases, not solves"
    eases = compare("lstm", lstm, "rnn", rnn, lower_is_better=False, min_effect=GRADIENT_EFFECT)
    measured = (f"log10 of the gradient kept at distance {distance}: " + eases.describe(".2f"))
    ease = CONSISTENT if eases.winner == "lstm" else CONTRADICTED if eases.winner == "rnn" else NOT_SETTLED
    m, se = mean_se(lstm)
    if math.isnan(m):
        solve = NOT_SETTLED
    elif m - 2 * se >= -1:
        solve = CONSISTENT
    elif m + 2 * se < -1:
        solve = CONTRADICTED
    else:
        solve = NOT_SETTLED
    return [Verdict("The LSTM keeps gradients alive better than the RNN (eases vanishing)", src,
                    measured, ease),
            Verdict(f"The LSTM solves vanishing gradients (keeps ≥ 1/10 of the gradient {distance} "
                    "steps back)", src, f"lstm log10 ratio {m:.2f} ± {2 * se:.2f} (2 se), threshold −1",
                    solve)]


def claim_context(gains: dict[str, Sequence[float]], plateaus: dict[str, Sequence[float]],
                  n_ctx: int) -> Verdict:
    """The published expectation for loss against position (Kaplan et al. 2020, fig. 7;
    Khandelwal et al. 2018 for LSTMs): LSTMs stop gaining from context within
    about 100 tokens, Transformers keep improving through the context.

    ``gains``: per seed, how much the loss falls from position 100 to n_ctx
    (nats; the road subtracts the same fall of its highest-order n-gram, which
    sees only its last few tokens, so that what is left is the gain from the
    extra context, not how hard the text at those positions of the windows
    happens to be); ``plateaus``: per seed, the position where the fitted
    curve comes within 0.01 nats of its end."""
    src = "Kaplan et al. 2020 (fig. 7); Khandelwal et al. 2018"
    claim = "LSTMs plateau within ~100 tokens of context; Transformers keep improving through it"
    if n_ctx <= 100 or "lstm" not in gains or "transformer" not in gains:
        return Verdict(claim, src, f"context of {n_ctx} tokens: too short to tell", NOT_SETTLED)
    c = compare("transformer", gains["transformer"], "lstm", gains["lstm"], lower_is_better=False)
    lp, lse = mean_se(plateaus["lstm"])
    measured = (f"gain from position 100 to {n_ctx} (beyond the n-gram reference): {c.describe('.3f')}; the "
                f"LSTM's fitted curve is within 0.01 nats of its end from position {lp:.0f} ± {2 * lse:.0f}")
    if c.winner == "transformer" and lp + 2 * lse < 100:
        return Verdict(claim, src, measured, CONSISTENT)
    if c.winner == "lstm" or lp - 2 * lse > 100:
        return Verdict(claim, src, measured, CONTRADICTED)
    return Verdict(claim, src, measured, NOT_SETTLED)


def solved_distance(losses: dict[int, Sequence[float]], baseline: dict[int, float],
                    fraction: float = 0.1) -> int | None:
    """The largest T at which the mean final loss is below ``fraction`` of the
    memoryless baseline (the task counted as learned), or None."""
    ok = [T for T, v in losses.items() if mean_se(v)[0] < fraction * baseline[T]]
    return max(ok) if ok else None
