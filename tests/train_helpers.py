"""A tiny, learnable image-folder dataset and settings for the training tests.

Three classes told apart by their dominant colour channel (plus noise), images of varied
sizes (64..100 px) so every size mode has something to do; written with Pillow as PNGs
in the ImageFolder layout with ``splits/train.txt`` and ``splits/val.txt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("blue", "green", "red")  # sorted: ImageFolder labels them 0, 1, 2
_CHANNEL = {"red": 0, "green": 1, "blue": 2}


def make_colour_folder(root: Path, n_train: int = 24, n_val: int = 6, seed: int = 0) -> Path:
    """Write the dataset under ``root`` and return ``root``."""
    rng = np.random.default_rng(seed)
    lines: dict[str, list[str]] = {"train": [], "val": []}
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            name = CLASSES[i % len(CLASSES)]
            h, w = int(rng.integers(64, 101)), int(rng.integers(64, 101))
            arr = rng.integers(0, 110, (h, w, 3)).astype(np.int64)
            arr[..., _CHANNEL[name]] += 130
            path = root / name / f"{split}_{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(path)
            lines[split].append(f"{name}/{path.name}")
    (root / "splits").mkdir(parents=True, exist_ok=True)
    for split, rows in lines.items():
        (root / "splits" / f"{split}.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


# Narrow ZF-5 on small crops: zf5's smallest input is 29 px; 64 -> a 3x3 conv5 map.
TINY = {
    "width": 0.125,
    "fc_dim": 32,
    "crop": 64,
    "small_crop": 52,
    "shorter": 72,
    "batch_size": 8,
    "plot": False,
}
