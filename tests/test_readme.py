"""The README's Python example must run as written (the docs pages' examples and every
command line: tests/test_docs.py)."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    scope: dict = {}
    api = next(block for block in blocks if "logits" in block)  # the Python API section
    exec(compile(api, str(README), "exec"), scope)
    assert scope["logits"].shape == (1, 20)
    assert scope["conv5"].shape[:2] == (1, 256)
    assert scope["pooled"].shape == (1, 12800)
    assert torch.isfinite(scope["fc7"]).all()
    assert scope["fc6"].shape == (1, 4096)
    assert scope["model"].num_classes == 4
    assert scope["again"].config() == scope["model"].config()
