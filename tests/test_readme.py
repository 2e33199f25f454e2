"""The README's Python example must run as written."""

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


def test_readme_pretrained_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    block = next(b for b in blocks if "pretrained=True" in b)
    scope: dict = {}
    exec(compile(block, str(README), "exec"), scope)
    model, twin = scope["model"].eval(), scope["twin"].eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 181, 263)).shape == (1, 20)  # any size
        assert twin(torch.zeros(1, 3, 224, 224)).shape == (1, 20)  # the fixed size
