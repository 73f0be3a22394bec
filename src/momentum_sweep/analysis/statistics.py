"""Statistics over replicates, for every stage that summarises (summarize, surface, compare):
means with confidence intervals (arithmetic, or geometric for counts of steps), paired t-tests
(of differences, or of ratios on the log scale), intervals widened to what a measurement known
only within brackets can resolve (``within_brackets``), Holm's correction within a family of
comparisons, the smallest detectable difference, and the verdict rule and its words. scipy and
statsmodels compute; this module only decides what to compute and says it in words.
"""

import gc
import math
import warnings

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from ..finite import finite, is_finite

CONFIDENCE = 0.95
# An interval, a test and so a verdict need two replicates at least.
FEWEST_REPLICATES_ADVICE = "set train.replicates to 2 or more"
ALPHA = 1 - CONFIDENCE
POWER = 0.8
VERDICT_RULE = (f"paired t-test over replicates; a verdict (better/worse, faster/slower, "
                f"fewer/more steps, higher/lower) only where the Holm-adjusted p (over one family: "
                f"the comparisons of one kind, on one figure) is below {ALPHA:.2f} and the "
                f"reported interval lies wholly on that side, otherwise 'no detectable "
                f"difference', with the smallest difference this run detects with {POWER:.0%} "
                f"power at the Bonferroni level; 'cannot tell' where every pair differs by the "
                f"same nonzero amount (ties of a coarse measurement: no spread, so no test) or "
                f"where the interval is open on both sides")


def describe(values) -> dict:
    """n, mean, standard deviation and the 95% t-interval of the mean (None below 2 values)."""
    values = np.asarray(finite(values), float)
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "ci": None}
    mean = float(values.mean())
    if n < 2:
        return {"n": 1, "mean": mean, "sd": None, "ci": None}
    sd = float(values.std(ddof=1))
    if sd == 0:  # all equal: the mean is exact (scipy would return NaN)
        return {"n": n, "mean": mean, "sd": 0.0, "ci": [mean, mean]}
    low, high = stats.t.interval(CONFIDENCE, n - 1, loc=mean, scale=stats.sem(values))
    return {"n": n, "mean": mean, "sd": sd, "ci": [float(low), float(high)]}


def describe_geometric(values) -> dict:
    """``describe`` on the log scale, back-transformed: the geometric mean and its 95% interval
    (positive quantities such as steps, compared as ratios; an interval never below zero)."""
    logs = describe([math.log(v) for v in finite(values) if v > 0])
    exp = (lambda v: None if v is None else math.exp(v))
    return {"n": logs["n"], "mean": exp(logs["mean"]), "sd_log": logs["sd"],
            "ci": None if logs["ci"] is None else [exp(c) for c in logs["ci"]]}


def band(groups):
    """For each group of values (one group per point of a curve; None and non-finite left out):
    the mean and the 95% interval, as arrays, NaN where there is none."""
    return band_of([describe(list(values)) for values in groups])


def band_of(found):
    """``describe``'s (or ``describe_geometric``'s) results as (mean, low, high) arrays, NaN
    where there is none."""
    mean = np.array([np.nan if d["mean"] is None else d["mean"] for d in found])
    low = np.array([np.nan if d["ci"] is None else d["ci"][0] for d in found])
    high = np.array([np.nan if d["ci"] is None else d["ci"][1] for d in found])
    return mean, low, high


def paired(a, b) -> dict:
    """Mean of a - b over the pairs where both are finite, its 95% CI and the t-test's p."""
    pairs = [(x, y) for x, y in zip(a, b) if is_finite(x) and is_finite(y)]
    n = len(pairs)
    if n < 2:
        mean = pairs[0][0] - pairs[0][1] if pairs else None
        return {"n": n, "mean_difference": mean, "sd_difference": None, "ci": None, "p": None}
    x, y = np.array(pairs).T
    d = x - y
    sd = float(d.std(ddof=1))
    mean = float(d.mean())
    if sd == 0:  # every pair differs by the same amount: identical models (exact, p = 1), or
        # ties of a coarse measurement, which show no spread to test against (no p, never 0)
        return {"n": n, "mean_difference": mean, "sd_difference": 0.0,
                "ci": [mean, mean] if mean == 0 else None, "p": 1.0 if mean == 0 else None,
                "tied": mean != 0}
    with warnings.catch_warnings():
        # Arms that differ by a few float roundings (a momentum and its control can) make scipy
        # warn of "catastrophic cancellation"; its result is still the right one here.
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        test = stats.ttest_rel(x, y)
        ci = test.confidence_interval(CONFIDENCE)
    return {"n": n, "mean_difference": mean, "sd_difference": sd,
            "ci": [float(ci.low), float(ci.high)], "p": float(test.pvalue)}


def paired_ratio(a, b) -> dict:
    """The ratio a/b over the pairs where both are finite and positive: the paired t-test of
    log a - log b, its mean and 95% interval exponentiated (a geometric-mean ratio)."""
    pairs = [(x, y) for x, y in zip(a, b) if is_finite(x) and is_finite(y) and x > 0 and y > 0]
    found = paired([math.log(x) for x, _ in pairs], [math.log(y) for _, y in pairs])
    exp = (lambda v: None if v is None else math.exp(v))
    return {**found, "ratio": exp(found["mean_difference"]),
            "ratio_ci": None if found["ci"] is None else [exp(c) for c in found["ci"]]}


def within_brackets(comparison, lows, highs) -> dict:
    """A paired comparison (from ``paired`` or ``paired_ratio``) of values each known only
    within a bracket: ``lows`` and ``highs`` are each pair's smallest and largest difference the
    brackets allow (-inf or inf where a bracket is open: a model that never reached a target).
    The interval becomes the hull of the t-interval and the mean's range over the brackets
    (mean of lows to mean of highs), so it is never narrower than the measurement resolves;
    ``bound`` says which side is open ("at least", "at most", "open" for both, None)."""
    low, high = float(np.mean(lows)), float(np.mean(highs))
    ci = comparison["ci"] or [low, high]
    widened = [min(ci[0], low), max(ci[1], high)]
    bound = {(False, True): "at least", (True, False): "at most",
             (True, True): "open"}.get((widened[0] == -math.inf, widened[1] == math.inf))
    found = {**comparison, "ci": [None if math.isinf(c) else c for c in widened], "bound": bound}
    if "ratio" in comparison:
        found["ratio_ci"] = [None if math.isinf(c) else math.exp(c) for c in widened]
    return found


def holm(pvalues) -> list:
    """Holm-adjusted p-values; None stays None."""
    present = [i for i, p in enumerate(pvalues) if p is not None]
    adjusted = [None] * len(pvalues)
    if present:
        # multipletests runs gc.collect() on every call: 60 ms with torch's objects in the
        # heap, seconds over the surface stage's families. Frozen objects are not scanned.
        gc.freeze()
        try:
            values = multipletests([pvalues[i] for i in present], alpha=ALPHA,
                                   method="holm")[1]
        finally:
            gc.unfreeze()
        for i, value in zip(present, values):
            adjusted[i] = float(value)
    return adjusted


def detectable(n, sd_difference, comparisons) -> float | None:
    """The smallest mean difference a paired t-test on n pairs detects with 80% power, at the
    Bonferroni level ALPHA/comparisons (the strictest level Holm's method applies)."""
    if n is None or n < 2 or not sd_difference:
        return None
    effect = TTestPower().solve_power(effect_size=None, nobs=n, alpha=ALPHA / comparisons,
                                      power=POWER, alternative="two-sided")
    return float(effect * sd_difference)


def family(rows, projected=()) -> list:
    """One family of comparisons (rows from ``paired``): each gets its Holm-adjusted p, its
    outcome and the smallest difference the run detects (``detectable``; ``detectable_with``:
    what n replicates would, for each n in ``projected``, if the pairs kept this spread)."""
    for row, adjusted in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = adjusted
        row["outcome"] = outcome(row)
        row["detectable"] = detectable(row["n"], row["sd_difference"], len(rows))
        if projected:
            row["detectable_with"] = {str(n): detectable(n, row["sd_difference"], len(rows))
                                      for n in projected}
    return rows


def pp(fraction) -> str:
    """A difference of accuracies in percentage points."""
    return f"{100 * fraction:+.2f} pp"


def excludes_zero(ci, positive) -> bool:
    """Whether an interval (None at an open end) lies wholly above zero (``positive``) or
    wholly below it."""
    low, high = ci or (None, None)
    return (low is not None and low > 0) if positive else (high is not None and high < 0)


def outcome(comparison) -> str:
    """better, worse, no detectable difference, cannot tell (one pair, ties, or an interval
    open on both sides), not reached (``none_reached``: no model of either arm reached its
    target) or diverged (no pair)."""
    n, p = comparison["n"], comparison["p_holm"]
    if n == 0:
        return "diverged"
    if comparison.get("none_reached"):
        return "not reached"
    if n < 2 or comparison.get("tied") or comparison.get("bound") == "open":
        return "cannot tell"
    positive = comparison["mean_difference"] > 0
    if p is not None and p < ALPHA and excludes_zero(comparison["ci"], positive):
        return "better" if positive else "worse"
    return "no detectable difference"


def word(comparison, higher="better", lower="worse", none="diverged") -> str:
    """``outcome`` as a table cell, a word or two: ``higher`` or ``lower`` (the direction of a
    detected difference), "no diff", "cannot tell" (one pair), or ``none`` (no pair at all)."""
    return {"better": higher, "worse": lower, "no detectable difference": "no diff",
            "diverged": none, "not reached": "not reached"}.get(outcome(comparison),
                                                                "cannot tell")


def cell(labelled, null="no diff") -> str:
    """A family's words as one table cell: the labels grouped by word ("worse: 0.4; better:
    0.2"), the ``null`` word (what most comparisons say) left out; ``null`` alone when every
    comparison says it, "-" when there is none."""
    groups = {}
    for label, said in labelled:
        groups.setdefault(said, []).append(label)
    shown = "; ".join(f"{said}: {' '.join(labels)}" for said, labels in groups.items()
                      if said != null)
    return shown or (null if groups else "-")


WORDS = {"better": "better than", "worse": "worse than",
         "no detectable difference": "no detectable difference from"}


def verdict(comparison, against, estimate, interval, words=WORDS, note="") -> str:
    """A comparison's result in a sentence, following VERDICT_RULE: ``estimate`` and ``interval``
    as the figure is written (-0.36 pp; -0.51 pp, -0.20 pp), ``words`` for each outcome, and a
    ``note`` after it."""
    result = outcome(comparison)
    if result == "diverged":
        return f"no result: no pair of models with figures to compare with {against}{note}"
    if result == "not reached":
        return f"not reached: neither this arm nor {against} reached the target{note}"
    if result == "cannot tell" and comparison["n"] < 2:
        return (f"cannot tell from {against} ({estimate}): one replicate gives no interval; "
                f"{FEWEST_REPLICATES_ADVICE}{note}")
    if result == "cannot tell":
        why = ("every pair differs by the same amount (ties of the measurement's resolution), "
               "so there is no spread to test against; add replicates" if comparison.get("tied")
               else "models that did not reach the target on both sides leave it open")
        return f"cannot tell from {against} ({estimate} [{interval}]): {why}{note}"
    return f"{words[result]} {against}: {estimate} [{interval}]{note}"


def difference_verdict(comparison, against) -> str:
    """The sentence of a difference of accuracies, with what the run detects where it finds
    none."""
    difference, ci = comparison["mean_difference"], comparison["ci"] or (None, None)
    detect = comparison["detectable"]
    note = (f"; this run detects about {100 * detect:.2f} pp" if detect and
            outcome(comparison) == "no detectable difference" else "")
    return verdict(comparison, against, "-" if difference is None else pp(difference),
                   "-" if ci[0] is None else f"{pp(ci[0])}, {pp(ci[1])}", note=note)
