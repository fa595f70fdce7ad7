"""Power of the paired AUROC difference (a readout against ``length_and_complexity``) at a validation size.

    .venv/bin/python bench/paired_auroc_power.py [--tasks 80] [--prevalence 0.4] [--runs 150]

Binormal scores: the reference ``1.5 y + shared``, a readout ``d y + rho shared + sqrt(1 - rho^2) own`` (``y`` the
class, ``shared`` and ``own`` standard normal), so within a class the two correlate ``rho``. With ``d = 1.5`` the
two have one AUROC (about 0.86): the share of runs whose DeLong p is below 0.05 is the false-positive rate. With
``d = 2.2`` (AUROC about 0.94) the share of runs whose 95 % paired interval lies above 0 is the power. Prints,
per ``rho``, the median half-width of the interval, the false-positive rate and the power.
"""

from __future__ import annotations

import argparse

import numpy as np

from pva_dagster.study.statistics import paired_auroc_difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=80)
    parser.add_argument("--prevalence", type=float, default=0.4)
    parser.add_argument("--runs", type=int, default=150)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for rho in (0.5, 0.8):
        widths, false_positive, found = [], [], []
        for run in range(args.runs):
            y = rng.random(args.tasks) < args.prevalence
            shared, own = rng.normal(size=args.tasks), rng.normal(size=args.tasks)
            reference = 1.5 * y + shared
            same, better = (d * y + rho * shared + np.sqrt(1 - rho**2) * own for d in (1.5, 2.2))
            null = paired_auroc_difference(same, reference, y, run)
            widths.append((null["ci_high"] - null["ci_low"]) / 2)
            false_positive.append(null["p_delong"] < 0.05)
            found.append(paired_auroc_difference(better, reference, y, run)["ci_low"] > 0)
        print(f"rho {rho}: half-width {np.median(widths):.3f}, false positives {np.mean(false_positive):.3f}, "
              f"power {np.mean(found):.2f}")


if __name__ == "__main__":
    main()
