"""The voting rules of decision-level fusion, on the models' outputs.

Each rule combines the outputs of ``m`` models on ``n`` rows, skipping the models
whose modality is missing in a row: ``weights`` is ``(m, n)``, each model's weight
in each row, 0 where its modality is missing (or its weight is 0). Every row passed
here has at least one model with a positive weight; the estimators handle the rows
without one.
"""

import numpy as np
from sklearn.utils.extmath import softmax

# Probabilities are floored before the product rule takes their logs, so that one
# model's exact zero (a random forest's vote share, say) is a strong veto but not an
# infinite one.
PROBA_FLOOR = 1e-9


def soft_vote(probas, weights):
    """Weighted mean of the probabilities ``(m, n, k)``."""
    fused = np.einsum("mn,mnk->nk", weights, probas)
    return fused / weights.sum(axis=0)[:, None]


def product_vote(probas, weights):
    """Product of the probabilities raised to the weights, renormalised."""
    logs = np.einsum("mn,mnk->nk", weights, np.log(np.maximum(probas, PROBA_FLOOR)))
    return softmax(logs, copy=False)


def max_vote(probas, weights):
    """The probabilities of the model with the largest weighted top probability."""
    confidence = np.where(weights > 0, weights * probas.max(axis=2), -np.inf)
    return probas[confidence.argmax(axis=0), np.arange(probas.shape[1])]


PROBA_RULES = {"soft": soft_vote, "product": product_vote, "max": max_vote}
"""Name of a rule combining probabilities -> the rule."""


def hard_vote(labels, weights, n_classes):
    """Weighted majority of the predicted class codes ``(m, n)``; ties go to the
    first class."""
    votes = np.zeros((labels.shape[1], n_classes))
    rows = np.arange(labels.shape[1])
    for model_labels, model_weights in zip(labels, weights):
        np.add.at(votes, (rows, model_labels.astype(int)), model_weights)
    return votes.argmax(axis=1)


def mean_vote(values, weights):
    """Weighted mean of the predictions ``(m, n)``."""
    return np.einsum("mn,mn->n", weights, values) / weights.sum(axis=0)


def median_vote(values, weights):
    """Median of the predictions of the models present (weight > 0) in each row."""
    return np.nanmedian(np.where(weights > 0, values, np.nan), axis=0)
