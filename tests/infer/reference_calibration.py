"""Reference calibrations for test_deployment.cpp: scikit-learn's IsotonicRegression and a
bounded scalar minimisation (SciPy) of temperature scaling's log-likelihood, on synthetic
overconfident scores drawn here with a fixed seed.

usage: reference_calibration.py OUT.pth
"""
import sys

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from sklearn.isotonic import IsotonicRegression


def main():
    rng = np.random.default_rng(7)
    n = 400
    z = rng.normal(0.0, 2.0, n)
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(np.float64)
    scores = 1.0 / (1.0 + np.exp(-2.5 * z))  # the truth's odds, overconfident by a power of 2.5

    grid = np.linspace(0.0, 1.0, 101)
    isotonic = IsotonicRegression(out_of_bounds="clip").fit(scores, labels)

    # Temperature scaling as pneumo fits it: Platt's smoothed targets, logits of scores clipped to
    # [1e-7, 1 - 1e-7]; the minimum over a = 1/T.
    positives = labels.sum()
    negatives = n - positives
    targets = np.where(labels == 1, (positives + 1) / (positives + 2), 1.0 / (negatives + 2))
    clipped = np.clip(scores, 1e-7, 1 - 1e-7)
    logits = np.log(clipped / (1 - clipped))

    def nll(log_a):
        q = 1.0 / (1.0 + np.exp(-np.exp(log_a) * logits))
        q = np.clip(q, 1e-300, 1 - 1e-16)
        return -np.sum(targets * np.log(q) + (1 - targets) * np.log1p(-q))

    best = minimize_scalar(nll, bounds=(np.log(1e-4), np.log(1e4)), method="bounded",
                           options={"xatol": 1e-12, "maxiter": 10000})
    torch.save({
        "scores": torch.tensor(scores),
        "labels": torch.tensor(labels),
        "grid": torch.tensor(grid),
        "isotonic": torch.tensor(isotonic.predict(grid)),
        "temperature": torch.tensor([1.0 / np.exp(best.x)]),
    }, sys.argv[1])


if __name__ == "__main__":
    main()
