"""Top-1 / top-5 error of a classifier under the paper's test views (Sec. 3.1.2-3.1.5).

Shape shorthand: N images, K classes, V views, C x h x w conv maps, L pyramid bins.

Views (each image's softmax scores are averaged over its views, then ranked):

- ``"center"``: one ``crop x crop`` center crop of the image resized to shorter side
  ``shorter`` (256) (Sec. 3.1.2, Table 3's "1 crop").
- ``"ten"``: the standard 10 views, center and 4 corners of the ENTIRE resized image, with
  and without flip (Sec. 3.1.2, Table 2).
- ``"full"``: the whole image resized to shorter side 256, aspect kept, one view (Sec. 3.1.4,
  Table 3). SPP models only.
- ``"multiview"``: multi-view testing on feature maps (Sec. 3.1.5, Table 4). For every scale
  ``s`` the conv maps of the whole image resized to shorter side ``s`` and of its mirror are
  computed ONCE; the ``crop x crop`` windows at the center, 4 corners and 4 side-middles
  (:func:`~sppnet.data.views.feature_map_view_boxes`; 18 views with flips, 6 at s = 224)
  are mapped onto the maps with :func:`~sppnet.ops.map_windows_to_features`, pooled with
  :func:`~sppnet.ops.window_pyramid_pool` and run through fc6-fc8; plus the 2 full-image
  views (image and mirror at shorter side 256): 96 + 2 views with the paper's six scales.
  SPP models only.

A flipped feature-map view is the mirrored box ``(W - x2, y1, W - x1, y2)`` on the map of
the mirrored image: exactly the content of the mirrored crop, which the map of the original
image cannot give (padding and stride make conv maps not mirror-symmetric).

Pixels: images go in as 0..255 floats minus ``mean`` (a constant, or a ``Tensor[3, h, w]``
mean image warped bilinearly to the network input, Appendix A), as in training; a crop is
mirrored before the mean is subtracted, as a training crop is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from sppnet._validate import check_int
from sppnet.data.decode import ImageDecodeError
from sppnet.data.transforms import check_mean, hflip, resize_shorter, subtract_mean, to_tensor
from sppnet.data.views import feature_map_view_boxes, ten_view_boxes
from sppnet.evaluation.classification import topk_errors
from sppnet.limits import ImageTooLargeError
from sppnet.ops import map_windows_to_features, window_pyramid_pool

__all__ = ["EVAL_VIEWS", "MULTIVIEW_SCALES", "evaluate_classifier", "feature_map_view_logits"]

#: The view names :func:`evaluate_classifier` knows, in the paper's order (Sec. 3.1.2-3.1.5).
EVAL_VIEWS: tuple[str, ...] = ("center", "ten", "full", "multiview")
#: The six scales of multi-view testing on feature maps (Sec. 3.1.5).
MULTIVIEW_SCALES: tuple[int, ...] = (224, 256, 300, 360, 448, 560)

_TOPK = (1, 5)  # the paper reports top-1 and top-5 error


# ----------------------------------------------------------------------------- pixels
# ------------------------------------------------------------------------ validation
def _check_views(views: Sequence[str]) -> tuple[str, ...]:
    if isinstance(views, str):
        views = (views,)
    out = tuple(dict.fromkeys(views))
    if not out:
        raise ValueError(f"views must name at least one of {', '.join(EVAL_VIEWS)}")
    unknown = [v for v in out if v not in EVAL_VIEWS]
    if unknown:
        raise ValueError(
            f"unknown view(s) {', '.join(map(repr, unknown))}; valid views: {', '.join(EVAL_VIEWS)}"
        )
    return out


def _check_model(model: nn.Module) -> None:
    needed = ("forward_features", "feature_stride", "feature_offset", "spp_levels", "spp_mode")
    missing = [a for a in needed if not hasattr(model, a)]
    if missing:
        raise TypeError(
            f"model must be an SPPNet-like classifier (sppnet.models.create_model); "
            f"{type(model).__name__} lacks {', '.join(missing)}"
        )


# ---------------------------------------------------------------------------- inputs
class _ViewInputs(Dataset):
    """Per image: the network inputs every requested view needs (CPU tensors, mean removed).

    Item: dict with ``label`` (int); ``crops`` ``Tensor[V, 3, crop, crop]`` (10-view order of
    :func:`ten_view_boxes`, or the center crop alone); ``full`` ``Tensor[2, 3, H, W]`` (image
    and mirror at shorter side ``shorter``); ``scales`` a list of ``(Tensor[2, 3, Hs, Ws],
    boxes Tensor[V_s, 4])`` per scale. A Dataset so a DataLoader's workers can decode and
    resize in parallel with the network.
    """

    def __init__(
        self,
        dataset: Any,
        views: tuple[str, ...],
        scales: tuple[int, ...],
        crop: int,
        shorter: int,
        mean: float | Tensor,
        skip_bad: bool = False,
    ) -> None:
        self.dataset = dataset
        self.skip_bad = skip_bad
        self.views = views
        self.scales = scales
        self.crop = crop
        self.shorter = shorter
        self.mean = mean

    def __len__(self) -> int:
        return len(self.dataset)

    def _pair(self, img: Image.Image) -> Tensor:
        """``Tensor[2, 3, H, W]``: the image and its horizontal mirror, mean removed."""
        t = to_tensor(img)
        return torch.stack([subtract_mean(t, self.mean), subtract_mean(hflip(t), self.mean)])

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            img, label = self.dataset[index]
        except ImageDecodeError as err:
            if not self.skip_bad:
                raise
            return {"bad": str(err.path)}  # left out of every view's count
        if not isinstance(img, Image.Image):
            raise TypeError(
                f"dataset item {index} must be (PIL image, label) (an ImageFolder without a "
                f"transform), got ({type(img).__name__}, ...)"
            )
        try:
            return self._views(img.convert("RGB"), int(label))
        except ImageTooLargeError as err:
            raise err.at(_sample_path(self.dataset, index)) from None

    def _views(self, img: Image.Image, label: int) -> dict[str, Any]:
        """The views of one decoded image (see the module docstring)."""
        item: dict[str, Any] = {"label": label}
        base = resize_shorter(img, self.shorter)
        if "center" in self.views or "ten" in self.views:
            boxes, flipped = ten_view_boxes(base.width, base.height, self.crop)
            if "ten" not in self.views:
                boxes, flipped = boxes[:1], flipped[:1]  # the center crop is the first view
            crops = []
            for box, flip in zip(boxes.long().tolist(), flipped.tolist(), strict=True):
                t = to_tensor(base.crop(tuple(box)))
                crops.append(subtract_mean(hflip(t) if flip else t, self.mean))
            item["crops"] = torch.stack(crops)
        if "full" in self.views or "multiview" in self.views:
            item["full"] = self._pair(base)
        if "multiview" in self.views:
            item["scales"] = []
            for s in self.scales:
                scaled = resize_shorter(img, s)
                boxes = feature_map_view_boxes(scaled.width, scaled.height, self.crop)
                item["scales"].append((self._pair(scaled), boxes))
        return item


def _sample_path(dataset: Any, index: int) -> str:
    """The file of item ``index`` where the dataset names it (``samples``), else its index."""
    samples = getattr(dataset, "samples", None)
    return str(samples[index][0]) if samples is not None else f"item {index}"


# ---------------------------------------------------------------------------- scoring
def feature_map_view_logits(model: nn.Module, pair: Tensor, boxes: Tensor) -> Tensor:
    """Logits of windows of one image and its mirror, pooled from their conv maps (Sec. 3.1.5).

    Args:
        model: an SPP classifier (``spp_levels`` not None) in eval mode.
        pair: ``Tensor[2, 3, H, W]``, the image and its horizontal mirror (mean removed), on
            the model's device.
        boxes: ``Tensor[V, 4]`` float windows in the (unflipped) image.

    Returns:
        ``Tensor[2 * V, K]``: the V windows of the image, then their mirrored boxes
        ``(W - x2, y1, W - x1, y2)`` on the mirrored image's map, in the same order.

    Raises:
        TypeError: a model that is not an SPPNet.
        ValueError: a no-SPP model, or ``pair`` / ``boxes`` of the wrong shape (boxes are
            further checked by :func:`~sppnet.ops.map_windows_to_features`).
    """
    _check_model(model)
    if model.spp_levels is None:
        raise ValueError(f"feature-map views need an SPP model; {model.name} has no SPP layer")
    if not isinstance(pair, Tensor) or pair.dim() != 4 or tuple(pair.shape[:2]) != (2, 3):
        got = tuple(pair.shape) if isinstance(pair, Tensor) else type(pair).__name__
        raise ValueError(f"pair must be Tensor[2, 3, H, W] (image and mirror), got {got}")
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        got = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"boxes must be Tensor[V, 4] (x1, y1, x2, y2), got {got}")
    width = pair.shape[-1]
    features = model.forward_features(pair)  # [2, C, h, w], each map computed once
    mirrored = torch.stack(
        [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1
    )
    windows = map_windows_to_features(
        torch.cat([boxes, mirrored]),
        model.feature_stride,
        tuple(features.shape[-2:]),
        model.feature_offset,
    )  # [2V, 4] cells
    n_view = boxes.shape[0]
    batch_index = torch.arange(2).repeat_interleave(n_view)  # [2V]: image, then mirror
    pooled = window_pyramid_pool(
        features,
        windows.to(features.device),
        batch_index.to(features.device),
        levels=model.spp_levels,
        mode=model.spp_mode,
    )  # [2V, C * L]
    return model.forward_pooled(pooled)  # [2V, K]


def _identity(item: Any) -> Any:
    return item


def evaluate_classifier(
    model: nn.Module,
    dataset: Any,
    *,
    views: Sequence[str] = EVAL_VIEWS,
    scales: Sequence[int] = MULTIVIEW_SCALES,
    crop: int = 224,
    shorter: int = 256,
    mean: float | Tensor = 128.0,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = True,
    skip_bad: bool = False,
) -> dict[str, dict[str, Any] | None]:
    """Top-1 / top-5 error of ``model`` on ``dataset`` for each requested test view.

    The model runs in eval mode under ``torch.inference_mode`` on its own device, and is put
    back in its previous mode afterwards.

    Args:
        model: an :class:`~sppnet.models.SPPNet` (``create_model``). A no-SPP model
            (``spp_levels`` None) takes only ``crop x crop`` inputs that pool to 6x6
            (224 for the paper's trunks): its ``"full"`` and ``"multiview"`` results are None.
        dataset: ``len()`` and ``dataset[i] -> (PIL RGB image, int label)``, e.g.
            ``ImageFolder(root, split="test")`` without a transform.
        views: names from :data:`EVAL_VIEWS` (module docstring), in any order.
        scales: shorter sides of multi-view testing, each ``>= crop`` (Sec. 3.1.5).
        crop: side of the square views (224 in the paper).
        shorter: shorter side for the center, 10 and full-image views (256, Sec. 3.1.2).
        mean: constant (128) or ``Tensor[3, h, w]`` mean image, subtracted from 0..255 pixels.
        batch_size: crops per forward pass of the center / 10-view path (full images and
            feature-map views go one image, with its mirror, at a time).
        num_workers: DataLoader worker processes that decode and resize images (0: inline).
        progress: show a tqdm bar over images.
        skip_bad: leave out the images whose decoding raises
            :class:`~sppnet.data.decode.ImageDecodeError` (give a dataset that raises, e.g.
            ``ImageFolder(skip_bad=False)``: one that substitutes another image would count
            that image twice); they count in no view.

    Returns:
        ``{view: {"top1_error", "top5_error", "num_images", "views_per_image"} or None}`` in
        the order of ``views``; errors are fractions in ``[0, 1]``, ``views_per_image`` the
        mean number of views averaged per image (98 for multiview with the six scales on a
        non-square image), ``skipped_files`` the images left out (``skip_bad``, a list of
        paths; ``num_images`` excludes them). Top-5 of a model with fewer than 5 classes is
        computed at ``k = K`` (see :func:`~sppnet.evaluation.topk_error`).

    Raises:
        TypeError: a model that is not an SPPNet, bad argument types, or dataset items that
            are not PIL images.
        ValueError: unknown views (the message lists the valid ones), an empty dataset, a
            crop below the model's minimum input, ``shorter`` or a scale below ``crop``.
        ImageDecodeError: an undecodable image (without ``skip_bad``), or no decodable one.
    """
    _check_model(model)
    cfg = _check_settings(model, views, scales, crop, shorter, mean, batch_size, num_workers)
    n_img = len(dataset)
    if n_img == 0:
        raise ValueError("dataset is empty: nothing to evaluate")
    # The no-SPP baseline pools a fixed 6x6 pool5: it cannot take a full image or a window.
    run = tuple(v for v in cfg.views if model.spp_levels is not None or v in ("center", "ten"))
    scores = _ViewScores(run, n_img, model.num_classes)
    inputs = _ViewInputs(
        dataset, run, cfg.scales, cfg.crop, cfg.shorter, cfg.mean, skip_bad=skip_bad
    )
    _score_images(model, _loader(inputs, cfg.num_workers, progress), scores, cfg.batch_size)
    if not scores.good.any():
        raise ImageDecodeError(
            getattr(dataset, "root", "dataset"), f"none of its {n_img} images can be decoded"
        )
    return scores.results(cfg.views)


@dataclass(frozen=True)
class _Settings:
    """The checked arguments of :func:`evaluate_classifier`."""

    views: tuple[str, ...]
    scales: tuple[int, ...]
    crop: int
    shorter: int
    mean: float | Tensor
    batch_size: int
    num_workers: int


def _check_settings(
    model: nn.Module,
    views: Sequence[str],
    scales: Sequence[int],
    crop: int,
    shorter: int,
    mean: float | Tensor,
    batch_size: int,
    num_workers: int,
) -> _Settings:
    views = _check_views(views)
    crop = check_int("crop", crop, min=1)
    shorter = check_int("shorter", shorter, min=1)
    batch_size = check_int("batch_size", batch_size, min=1)
    num_workers = check_int("num_workers", num_workers, min=0)
    mean = check_mean(mean)
    if isinstance(scales, int):
        scales = (scales,)
    scales = tuple(dict.fromkeys(check_int("scale", s, min=1) for s in scales))
    if crop < model.min_input_size:
        raise ValueError(
            f"crop must be >= {model.min_input_size} ({model.name}'s minimum input), got {crop}"
        )
    if shorter < crop:
        raise ValueError(f"shorter ({shorter}) must be >= crop ({crop}) for crop views to fit")
    if "multiview" in views:
        if not scales:
            raise ValueError("multiview needs at least one scale, e.g. (224, 256, 300)")
        small = [s for s in scales if s < crop]
        if small:
            raise ValueError(f"every scale must be >= crop ({crop}) for views to fit, got {small}")
    return _Settings(tuple(views), scales, crop, shorter, mean, batch_size, num_workers)


def _loader(inputs: _ViewInputs, num_workers: int, progress: bool) -> Iterable[dict[str, Any]]:
    """The images' views in order, decoded by ``num_workers`` processes, with a tqdm bar."""
    loader = DataLoader(
        inputs, batch_size=None, shuffle=False, num_workers=num_workers, collate_fn=_identity
    )
    if not progress:
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, total=len(inputs), desc="eval", unit="img", leave=False)


class _ViewScores:
    """Per view, the summed softmax scores of each image and how many views were summed."""

    def __init__(self, run: tuple[str, ...], n_img: int, num_classes: int) -> None:
        self.run = run
        self.sums = {v: torch.zeros(n_img, num_classes, dtype=torch.float64) for v in run}
        self.counts = {v: torch.zeros(n_img, dtype=torch.float64) for v in run}
        self.labels = torch.zeros(n_img, dtype=torch.long)
        self.good = torch.ones(n_img, dtype=torch.bool)
        self.skipped: list[str] = []

    def add(self, view: str, index: int, logits: Tensor) -> None:
        """Add the softmax scores of ``logits`` (``Tensor[V, K]``) to image ``index``'s sum."""
        self.sums[view][index] += F.softmax(logits.double(), dim=1).sum(0).cpu()
        self.counts[view][index] += logits.shape[0]

    def results(self, views: tuple[str, ...]) -> dict[str, dict[str, Any] | None]:
        """The errors of each view (None for one that was not run), over the good images."""
        good = self.good
        results: dict[str, dict[str, Any] | None] = {}
        for view in views:
            if view not in self.run:
                results[view] = None
                continue
            sums_v, counts_v = self.sums[view][good], self.counts[view][good]
            errors = topk_errors(sums_v / counts_v[:, None], self.labels[good], _TOPK)
            results[view] = {
                **errors,
                "num_images": int(good.sum()),
                "views_per_image": float(counts_v.mean()),
                "skipped_files": self.skipped,
            }
        return results


def _score_images(
    model: nn.Module, loader: Iterable[dict[str, Any]], scores: _ViewScores, batch_size: int
) -> None:
    """Run the model on every image's views (eval mode, restored after); add the scores.

    Center and 10-view crops of several images go through the network together, in batches
    of at least ``batch_size`` crops; a full image (with its mirror) and its feature-map
    views go one image at a time.
    """
    run, add = scores.run, scores.add
    device = next(model.parameters()).device
    pending: list[tuple[int, Tensor]] = []  # (image index, Tensor[V, 3, crop, crop])

    def flush() -> None:
        if not pending:
            return
        batch = torch.cat([c for _, c in pending]).to(device)
        logits = model(batch).split([c.shape[0] for _, c in pending])
        for (index, _), out in zip(pending, logits, strict=True):
            if "center" in run:
                add("center", index, out[:1])
            if "ten" in run:
                add("ten", index, out)
        pending.clear()

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for index, item in enumerate(loader):
                if "bad" in item:
                    scores.good[index] = False
                    scores.skipped.append(item["bad"])
                    continue
                scores.labels[index] = item["label"]
                if "crops" in item:
                    pending.append((index, item["crops"]))
                    if sum(c.shape[0] for _, c in pending) >= batch_size:
                        flush()
                if "full" in item:
                    full = item["full"].to(device)
                    if "multiview" in run:
                        logits = model(full)  # [2, K]: image and mirror
                        add("multiview", index, logits)
                        if "full" in run:
                            add("full", index, logits[:1])
                    else:
                        add("full", index, model(full[:1]))
                for pair, boxes in item.get("scales", ()):
                    add("multiview", index, feature_map_view_logits(model, pair.to(device), boxes))
            flush()
    finally:
        model.train(was_training)
