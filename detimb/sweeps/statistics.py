"""Intervals a reviewer would accept for a remedy's effect, paired by seed.

Two sources of noise (Bouthillier et al., "Accounting for variance in machine learning
benchmarks", MLSys 2021): training randomness, seen in how the per-seed paired
differences ``d_s`` scatter, and the finite validation set, seen by a paired bootstrap over
images (the same resampled images for both arms and every seed). detimb combines them:
the mean difference over seeds, with variance ``var_s(d) / S + var_boot(mean_s d)`` and a
Student t quantile on ``S - 1`` degrees of freedom (METHODS.md, "Choosing a remedy"). With
one seed training noise is not measured: the interval is the bootstrap's alone, and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats


@dataclass(frozen=True)
class Interval:
    """A difference's mean over seeds, its combined interval at ``level``, each seed's own
    difference, and whether the interval leaves out 0 (beyond noise)."""

    mean: float
    low: float
    high: float
    per_seed: tuple[float, ...]
    level: float
    method: str

    @property
    def beyond_noise(self) -> bool:
        return bool(self.low > 0.0 or self.high < 0.0)

    def words(self, name: str) -> str:
        if not self.beyond_noise:
            return f"{name} {self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]: within noise"
        return f"{name} {self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]: {'up' if self.mean > 0 else 'down'}"


def combined_interval(per_seed: np.ndarray, bootstrap_means: np.ndarray, level: float = 0.95) -> Interval | None:
    """``per_seed``: (S,) paired differences on the whole half; ``bootstrap_means``: (B,) the
    seed-mean difference on each bootstrap draw of its images (NaN draws left out). None when
    nothing is defined (the metric has no ground truth there)."""
    d = np.asarray(per_seed, dtype=np.float64)
    d = d[np.isfinite(d)]
    boot = np.asarray(bootstrap_means, dtype=np.float64)
    boot = boot[np.isfinite(boot)]
    if d.size == 0:
        return None
    mean = float(d.mean())
    boot_var = float(boot.var(ddof=1)) if boot.size > 1 else 0.0
    if d.size == 1:
        half = scipy_stats.norm.ppf(0.5 + level / 2) * math.sqrt(boot_var)
        method = "one seed: validation-image bootstrap only (training noise not measured)"
    else:
        half = scipy_stats.t.ppf(0.5 + level / 2, d.size - 1) * math.sqrt(d.var(ddof=1) / d.size + boot_var)
        method = (f"seeds and images: t({d.size - 1}) x sqrt(var_seeds / {d.size} + var_bootstrap),"
                  f" {boot.size} bootstrap draws")
    return Interval(mean, float(mean - half), float(mean + half), tuple(float(x) for x in d), level, method)
