"""Phase 3 statistics: direction handling, AUROC, the F1-optimal threshold and the metrics it gives."""

from __future__ import annotations

import numpy as np
import pytest

from pva_dagster.study.evaluation.validation import (
    Threshold,
    auroc,
    choose_threshold,
    classification_metrics,
    pr_points,
    roc_points,
)


def _noisy(seed: int = 0, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    activation = rng.normal(size=n)
    correct = activation + rng.normal(size=n) > 0.3
    return activation, correct


def _pairwise_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """AUROC from its definition: P(score of a positive > score of a negative), ties counting one half."""
    pos, neg = scores[positive][:, None], scores[~positive][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def test_auroc_matches_the_pairwise_definition_for_both_directions():
    activation, correct = _noisy()
    activation = np.round(activation, 1)  # ties, which the definition counts as one half
    assert auroc(activation, correct, "correct") == pytest.approx(_pairwise_auc(activation, correct))
    assert auroc(activation, correct, "incorrect") == pytest.approx(_pairwise_auc(activation, ~correct))
    # A latent that tracks correctness is good as a correct-preferring one and bad as an incorrect-preferring one.
    assert auroc(activation, correct, "correct") > 0.7
    assert auroc(activation, correct, "correct") + auroc(activation, correct, "incorrect") == pytest.approx(1.0)


def test_auroc_names_the_missing_class_and_unknown_directions():
    activation = np.array([0.1, 0.5, 0.9])
    with pytest.raises(ValueError, match="no incorrect samples"):
        auroc(activation, np.ones(3, bool), "correct")
    with pytest.raises(ValueError, match="no correct samples"):
        auroc(activation, np.zeros(3, bool), "incorrect")
    with pytest.raises(ValueError, match="'sideways'"):
        auroc(activation, np.array([True, False, True]), "sideways")
    with pytest.raises(ValueError, match="one length"):
        auroc(activation, np.array([True, False]), "correct")
    with pytest.raises(ValueError, match="non-finite"):
        auroc(np.array([0.1, np.nan, 0.3]), np.array([True, False, True]), "correct")


def test_threshold_separates_separable_data_and_ties_go_to_the_highest():
    activation = np.array([0.0, 1.0, 2.0, 7.0, 8.0, 10.0])
    correct = np.array([False, False, False, True, True, True])
    threshold = choose_threshold(activation, correct, "correct")
    assert threshold.operator == ">"
    assert threshold.f1 == 1.0 and not threshold.one_class and threshold.n == 6
    # Only the midpoint between 2 and 7 separates perfectly.
    assert threshold.value == 4.5
    # The same data for an incorrect-preferring latent: incorrect samples have *low* activation, so no
    # "activation > t" rule isolates them; the best is to call everything positive, and that is flagged.
    reverse = choose_threshold(activation, correct, "incorrect")
    assert (reverse.value, reverse.operator) == (activation.min(), ">=") and reverse.one_class  # never below it
    assert reverse.f1 == pytest.approx(2 * 3 / (2 * 3 + 3))  # precision 1/2, recall 1


def test_ties_go_to_the_threshold_that_separates_not_to_everything_positive():
    # Mostly-zero activations, as SAE latents have. "Everything positive" gives F1 = 2*2/(2*2+2) = 2/3, and
    # "> 2.5" (one true positive, no false one, one missed) gives 2*1/(2*1+0+1) = 2/3 as well: a tie.
    activation = np.array([5.0, 0.0, 0.0, 0.0])
    correct = np.array([True, True, False, False])
    threshold = choose_threshold(activation, correct, "correct")
    assert threshold.f1 == pytest.approx(2 / 3)
    assert threshold.value == 2.5 and not threshold.one_class


def test_metrics_apply_the_threshold_unchanged_on_another_split():
    tune_activation, tune_correct = _noisy(seed=1)
    threshold = choose_threshold(tune_activation, tune_correct, "incorrect")
    activation, correct = _noisy(seed=2)
    metrics = classification_metrics(activation, correct, "incorrect", threshold)
    predicted, positive = activation > threshold.value, ~correct
    tp = int((predicted & positive).sum())
    assert metrics["n"] == len(activation)
    assert metrics["n_positive"] == int(positive.sum())
    assert metrics["precision"] == pytest.approx(tp / predicted.sum())
    assert metrics["recall"] == pytest.approx(tp / positive.sum())
    assert metrics["f1"] == pytest.approx(2 * tp / (predicted.sum() + positive.sum()))
    assert metrics["accuracy"] == pytest.approx((predicted == positive).mean())


def test_metrics_with_no_predicted_positives_are_zero_not_errors():
    activation, correct = np.array([0.1, 0.2, 0.3]), np.array([True, False, True])
    metrics = classification_metrics(activation, correct, "correct", Threshold(5.0, ">", 0.0))
    assert metrics["precision"] == 0.0 and metrics["recall"] == 0.0 and metrics["f1"] == 0.0
    assert metrics["accuracy"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="'<='"):
        classification_metrics(activation, correct, "correct", Threshold(0.2, "<=", 0.0))


def test_curve_points_span_the_unit_square_and_integrate_to_auroc():
    activation, correct = _noisy(seed=3)
    fpr, tpr = roc_points(activation, correct, "correct")
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(activation, correct, "correct"))
    recall, precision = pr_points(activation, correct, "incorrect")
    assert recall.shape == precision.shape
    assert recall.max() == 1.0 and recall.min() == 0.0
    # At full recall the precision is the share of the positive class (incorrect samples).
    assert precision[np.argmax(recall)] == pytest.approx((~correct).mean())
