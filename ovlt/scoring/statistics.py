"""The statistics that compare checkpoints: accuracy intervals, paired tests, pass@k."""

from __future__ import annotations

import numpy as np


def accuracy_ci(correct: list[bool], level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict:
    """Accuracy with a percentile-bootstrap confidence interval (resampling items with replacement).

    The bootstrap needs no normality assumption and is the same machinery as `paired_bootstrap`, so intervals
    and paired tests agree; at n=300 it matches the Wilson interval to about half a point.
    """
    x = np.asarray(correct, dtype=float)
    if x.size == 0:
        raise ValueError("accuracy_ci needs at least one item")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return {"accuracy": float(x.mean()), "low": float(low), "high": float(high), "level": level, "n": int(x.size)}


def paired_bootstrap(a: list[float], b: list[float], n_boot: int = 10000, seed: int = 0) -> dict:
    """Difference in accuracy b - a on the same items (each item 0/1, or the share of its samples right), its 95%
    interval, and a two-sided bootstrap p-value (how often the centred resampled difference is at least as far
    from 0 as the observed one)."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.shape != xb.shape or xa.size == 0:
        raise ValueError(f"paired_bootstrap needs two equal, non-empty lists (got {xa.size} and {xb.size})")
    diff = float(xb.mean() - xa.mean())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, xa.size, size=(n_boot, xa.size))
    boot = (xb[idx] - xa[idx]).mean(axis=1)
    p_value = float(np.mean(np.abs(boot - diff) >= abs(diff) - 1e-12))
    low, high = np.quantile(boot, [0.025, 0.975])
    return {"diff": diff, "ci95": (float(low), float(high)), "p_value": p_value}


def mcnemar(a: list[bool], b: list[bool]) -> dict:
    """Exact McNemar test on paired verdicts: a binomial test on the discordant pairs."""
    from scipy.stats import binomtest

    if len(a) != len(b):
        raise ValueError(f"mcnemar needs two equal lists (got {len(a)} and {len(b)})")
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    n = only_a + only_b
    p_value = 1.0 if n == 0 else float(binomtest(only_a, n, 0.5).pvalue)
    return {"only_a": only_a, "only_b": only_b, "p_value": p_value}



def pass_at_k(n_correct: list[int], k: int) -> dict:
    """pass@1 (mean share of correct samples) and pass@k (share of problems with at least one)."""
    n = len(n_correct)
    return {"problems": n, "k": k, "pass@1": round(sum(c / k for c in n_correct) / n, 4) if n else 0.0,
            "pass@k": round(sum(c > 0 for c in n_correct) / n, 4) if n else 0.0}

