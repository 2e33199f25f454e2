"""The per-class heads of a detector run (stages 5 and 6): linear SVMs on fc7 with
hard-negative mining, and ridge box regressors on pooled conv5 features (Sec. 4.2)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from sppnet.detect.config import DetectorTrainConfig
from sppnet.detect.windows import _WindowTable
from sppnet.detection.box_regression import fit_ridge
from sppnet.detection.linear_svm import feature_norm_scale, fit_linear_svm
from sppnet.detection.targets import hard_negative_round, regression_targets, svm_negatives


@torch.inference_mode()
def _fc7(model: nn.Module, pooled: Tensor, batch: int = 4096) -> Tensor:
    device = next(model.parameters()).device
    parts = [
        model.forward_pooled(pooled[i : i + batch].to(device), pre_logits=True).cpu()
        for i in range(0, pooled.shape[0], batch)
    ]
    return torch.cat(parts) if parts else pooled.new_zeros((0, model.fc_dim))


def _svm_candidates(
    table: _WindowTable, num_classes: int
) -> tuple[list[list[int]], list[list[np.ndarray]]]:
    """Global ids of each class's SVM positives, and its negatives per image (Sec. 4.2)."""
    pos_ids: list[list[int]] = [[] for _ in range(num_classes)]
    negatives: list[list[np.ndarray]] = [[] for _ in range(num_classes)]  # per class, per image
    for img in range(len(table.ids)):
        rec = table.records[img]
        boxes = torch.from_numpy(rec["boxes"])
        is_gt = rec["is_gt"]
        gt_boxes, gt_labels = torch.from_numpy(rec["gt_boxes"]), rec["gt_labels"]
        gt_rows = np.nonzero(is_gt)[0]
        kept_gt = np.nonzero(~rec["gt_difficult"])[0]  # the gt rows, in order
        for row, g in zip(gt_rows, kept_gt, strict=True):
            pos_ids[int(gt_labels[g]) - 1].append(int(table.offsets[img] + row))
        props = np.nonzero(~is_gt)[0]
        for c in range(num_classes):
            # Difficult objects of the class count too: never a negative.
            of_class = gt_boxes[torch.from_numpy(gt_labels == c + 1)]
            neg = svm_negatives(boxes[props], of_class).numpy()
            negatives[c].append(props[neg] + table.offsets[img])
    return pos_ids, negatives


def train_svms(
    model: nn.Module,
    table: _WindowTable,
    num_classes: int,
    config: DetectorTrainConfig,
    progress: bool = False,
) -> tuple[Tensor, Tensor, float, dict[str, Any]]:
    """Per-class linear SVMs on fc7 with hard-negative mining (Sec. 4.2, R-CNN's recipe).

    Positives: the class's non-difficult ground-truth boxes. Negatives: proposals with
    IoU <= 0.3 with every ground truth of the class, deduplicated at 0.7
    (:func:`~sppnet.detection.svm_negatives`). Each SVM first trains on the positives and
    ``svm_initial_negatives`` random negatives per image; then, ``hard_negative_rounds``
    times, every negative of every image is scored, the margin violators (score > -1) join
    the cache, easy ones (< -1.2) leave it, and the SVM is retrained.

    Returns:
        ``(weight Tensor[K, D], bias Tensor[K], feature_scale, stats)``.
    """
    model.eval()
    gen = np.random.default_rng(config.seed)
    # Feature scale: mean fc7 norm 20 over a sample of windows.
    sample = torch.from_numpy(
        gen.choice(int(table.offsets[-1]), size=min(2000, int(table.offsets[-1])), replace=False)
    )
    scale = feature_norm_scale(_fc7(model, table.gather(sample)))
    pos_ids, negatives = _svm_candidates(table, num_classes)
    svms = _SvmTrainer(model, table, config, scale, pos_ids)
    caches = svms.train_initial(negatives, gen, progress)
    added = [0] * num_classes
    for _ in range(config.hard_negative_rounds):
        hard = svms.hard_negatives(negatives, progress)
        for c in range(num_classes):
            if svms.trained[c]:
                caches[c], new = svms.mine(c, caches[c], hard[c])
                added[c] += new
    stats = {
        "feature_scale": scale,
        "positives": [len(p) for p in pos_ids],
        "negatives": [int(c.size) for c in caches],
        "hard_negatives_added": added,
        "untrained_classes": [c for c in range(num_classes) if not svms.trained[c]],
    }
    return svms.weight, svms.bias, scale, stats


class _SvmTrainer:
    """The per-class SVMs of :func:`train_svms` as they train: weights, and which trained.

    Args:
        model: the network whose fc7 features the SVMs score.
        table: the cached windows.
        config: the SVM settings.
        scale: the feature scale (mean fc7 norm 20).
        pos_ids: each class's positives (global window ids).
    """

    def __init__(
        self,
        model: nn.Module,
        table: _WindowTable,
        config: DetectorTrainConfig,
        scale: float,
        pos_ids: list[list[int]],
    ) -> None:
        self.model, self.table, self.config, self.scale = model, table, config, scale
        self.pos_ids = pos_ids
        self.weight: Tensor = torch.zeros(0)
        self.bias: Tensor = torch.zeros(0)
        self.trained: list[bool] = []

    def features(self, ids: np.ndarray | Tensor) -> Tensor:
        """Scaled fc7 features ``Tensor[len(ids), D]`` of global window ids."""
        ids = torch.from_numpy(ids) if isinstance(ids, np.ndarray) else ids
        return _fc7(self.model, self.table.gather(ids)) * self.scale

    def train(self, c: int, negatives: np.ndarray) -> None:
        """(Re)train class ``c``'s SVM on its positives and ``negatives``."""
        pos = torch.tensor(self.pos_ids[c], dtype=torch.long)
        self.weight[c], self.bias[c] = fit_linear_svm(
            self.features(pos),
            self.features(negatives),
            self.config.svm_c,
            self.config.svm_positive_weight,
        )

    def train_initial(
        self, negatives: list[list[np.ndarray]], gen: np.random.Generator, progress: bool
    ) -> list[np.ndarray]:
        """Train each class on ``svm_initial_negatives`` random negatives per image.

        Returns:
            Each class's negative cache (global window ids).
        """
        num_classes, limit = len(self.pos_ids), self.config.svm_initial_negatives
        self.weight = torch.zeros(num_classes, self.model.fc_dim)
        self.bias = torch.zeros(num_classes)
        self.trained = [False] * num_classes
        caches: list[np.ndarray] = []
        for c in tqdm(
            range(num_classes), disable=not progress, desc="SVMs (initial)", unit="class"
        ):
            initial = [
                n if len(n) <= limit else gen.choice(n, limit, replace=False) for n in negatives[c]
            ]
            cache = np.unique(np.concatenate(initial)) if initial else np.zeros(0, np.int64)
            caches.append(cache.astype(np.int64))
            if self.pos_ids[c] and cache.size:
                self.train(c, cache)
                self.trained[c] = True
        return caches

    def hard_negatives(
        self, negatives: list[list[np.ndarray]], progress: bool
    ) -> list[list[np.ndarray]]:
        """Per class and image, the negatives the current SVMs score above -1."""
        table, num_classes = self.table, len(self.pos_ids)
        hard: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
        n_img = len(table.ids)
        for img in tqdm(range(n_img), disable=not progress, desc="hard negatives", unit="img"):
            rows = torch.arange(int(table.offsets[img]), int(table.offsets[img + 1]))
            scores = self.features(rows) @ self.weight.T + self.bias  # [R, K]
            for c in range(num_classes):
                ids = negatives[c][img]
                s = scores[torch.from_numpy(ids - table.offsets[img]), c]
                hard[c].append(ids[(s > -1.0).numpy()])
        return hard

    def mine(self, c: int, cache: np.ndarray, hard: list[np.ndarray]) -> tuple[np.ndarray, int]:
        """One round of hard-negative mining for class ``c``; retrains its SVM.

        Returns:
            The new negative cache, and how many negatives in it are new.
        """
        cands = np.concatenate(hard) if hard else np.zeros(0, np.int64)
        cache_scores = self.features(cache) @ self.weight[c] + self.bias[c]
        cand_scores = self.features(cands) @ self.weight[c] + self.bias[c]
        new = hard_negative_round(
            torch.from_numpy(cache), cache_scores, torch.from_numpy(cands), cand_scores
        ).numpy()
        if new.size:
            self.train(c, new)
        return new, int(np.setdiff1d(new, cache).size)


def train_box_regressors(
    table: _WindowTable, num_classes: int, lam: float = 1000.0, seed: int = 0
) -> tuple[Tensor, Tensor, float, list[int]]:
    """Per-class ridge regression of R-CNN box deltas on pooled conv5 features (Sec. 4.2).

    Trained on every cached window (ground truth included) whose IoU with a ground truth
    of the class is >= 0.5, onto that ground truth; features rescaled to mean norm 20.

    Returns:
        ``(weight Tensor[K, P, 4], bias Tensor[K, 4], feature_scale, samples per class)``;
        a class without samples gets zero weights (no change to its boxes).
    """
    gen = np.random.default_rng(seed)
    total = int(table.offsets[-1])
    sample = torch.from_numpy(gen.choice(total, size=min(2000, total), replace=False))
    scale = feature_norm_scale(table.gather(sample))
    weight = torch.zeros(num_classes, table.cache.dim, 4)
    bias = torch.zeros(num_classes, 4)
    counts = []
    for c in range(num_classes):
        ids = torch.nonzero(table.labels == c + 1).flatten()
        counts.append(int(ids.numel()))
        if ids.numel() == 0:
            continue
        boxes, gts = [], []
        for gid in ids.tolist():
            img = int(np.searchsorted(table.offsets, gid, side="right") - 1)
            rec = table.records[img]
            row = gid - int(table.offsets[img])
            boxes.append(rec["boxes"][row])
            gts.append(rec["gt_boxes"][rec["matched"][row]])
        targets = regression_targets(
            torch.from_numpy(np.stack(boxes)), torch.from_numpy(np.stack(gts))
        )
        weight[c], bias[c] = fit_ridge(table.gather(ids) * scale, targets, lam)
    return weight, bias, scale, counts
