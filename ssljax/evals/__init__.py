"""Evaluations of frozen features: weighted kNN and a linear probe (pure functions on arrays)."""

from ssljax.evals.knn import knn_predict, knn_top1
from ssljax.evals.linear import linear_probe

__all__ = ["knn_predict", "knn_top1", "linear_probe"]
