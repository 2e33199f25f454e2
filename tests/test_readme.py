"""The README's Python example must run as written."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    scope: dict = {}
    exec(compile(blocks[0], str(README), "exec"), scope)
    assert scope["logits"].shape == (1, 20)
    assert scope["conv5"].shape[:2] == (1, 256)
    assert scope["pooled"].shape == (1, 12800)
    assert torch.isfinite(scope["fc7"]).all()
