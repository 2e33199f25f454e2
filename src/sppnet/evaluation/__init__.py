"""Metrics: arrays in, numbers out. Never imports models or engine."""

from sppnet.evaluation.classification import topk_error, topk_errors

__all__ = ["topk_error", "topk_errors"]
