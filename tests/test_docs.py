"""The docs must stay true: every Python example in docs/*.md runs as written, and every
command line in the README, docs/*.md and the Makefile parses with the real parser.

Command lines are the ``sppnet ...`` (and ``torchrun ... -m sppnet ...``) lines of ```bash
blocks, checked with the ``sppnet`` command's own parser, and the ``python benchmarks/X.py
...`` lines, checked with that script's ``build_parser()``. Lines are parsed only, never run.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

from sppnet.cli.app import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md"))
BENCHMARKS = ROOT / "benchmarks"

pytestmark = pytest.mark.usefixtures("one_thread")


def fenced_blocks(text: str, language: str) -> list[str]:
    """The bodies of the ```language fenced blocks of a markdown text, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def command_lines(text: str) -> list[list[str]]:
    """The commands of the ```bash blocks: continuation lines joined, comments dropped,
    ``a && b`` split, leading ``VAR=value`` assignments removed; each as its words."""
    commands = []
    for block in fenced_blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                command, words = words[:cut], words[cut + 1 :]
                while command and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", command[0]):
                    command = command[1:]
                if command:
                    commands.append(command)
    return commands


def sppnet_arguments(command: list[str]) -> list[str] | None:
    """The arguments of an ``sppnet`` command (also ``torchrun ... -m sppnet ...``), else None."""
    if command[0] == "sppnet":
        return command[1:]
    for i in range(len(command) - 1):
        if command[i] == "-m" and command[i + 1] == "sppnet":
            return command[i + 2 :]
    return None


def benchmark_arguments(command: list[str]) -> tuple[str, list[str]] | None:
    """``(script name, arguments)`` of a ``python benchmarks/X.py ...`` command, else None."""
    for i, word in enumerate(command):
        if re.fullmatch(r"(\$\(BIN\)/)?python3?", word) and i + 1 < len(command):
            match = re.fullmatch(r"benchmarks/(\w+)\.py", command[i + 1])
            if match:
                return match.group(1), command[i + 2 :]
    return None


def _load_benchmark(name: str) -> ModuleType:
    """A benchmark script as a module (its folder on the path, as when it runs)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _documented_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in [ROOT / "README.md", *PAGES]:
        for command in command_lines(path.read_text(encoding="utf-8")):
            found.append((path.name, command))
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for line in makefile.splitlines():
        if line.startswith("\t") and not line.lstrip().startswith("@#"):
            found.append(("Makefile", shlex.split(line, comments=True)))
    return found


COMMANDS = _documented_commands()
SPPNET_LINES = [(page, args) for page, c in COMMANDS if (args := sppnet_arguments(c)) is not None]
BENCHMARK_LINES = [(page, b) for page, c in COMMANDS if (b := benchmark_arguments(c)) is not None]


def test_the_docs_are_there_and_hold_commands():
    assert {p.name for p in PAGES} >= {"design.md", "benchmarks.md", "detection.md"}
    assert len(SPPNET_LINES) >= 30
    assert {name for _, (name, _) in BENCHMARK_LINES} >= {"spp_speed", "detection_speed"}


@pytest.mark.parametrize(
    ("page", "args"), SPPNET_LINES, ids=[f"{p}:{' '.join(a[:2])}" for p, a in SPPNET_LINES]
)
def test_sppnet_command_lines_parse(page, args, capsys):
    try:
        namespace = build_parser().parse_args(args)
    except SystemExit as stop:  # argparse's way of refusing a command line
        error = capsys.readouterr().err.strip().splitlines()
        pytest.fail(f"{page}: `sppnet {' '.join(args)}` does not parse ({stop.code}): {error}")
    assert namespace.command is not None, f"{page}: `sppnet {' '.join(args)}` names no command"


@pytest.mark.parametrize(
    ("page", "script", "args"),
    [(page, name, args) for page, (name, args) in BENCHMARK_LINES],
    ids=[f"{p}:{n}" for p, (n, _) in BENCHMARK_LINES],
)
def test_benchmark_command_lines_parse(page, script, args, capsys):
    if script == "onnx_speed":
        pytest.importorskip("onnxruntime")
    parser = _load_benchmark(script).build_parser()
    try:
        parser.parse_args(args)
    except SystemExit as stop:
        error = capsys.readouterr().err.strip().splitlines()
        pytest.fail(f"{page}: `{script}.py {' '.join(args)}` does not parse ({stop.code}): {error}")


def test_a_bad_command_line_is_caught(capsys):
    # the check above must be able to fail: a misspelt option does not parse
    (command,) = command_lines("```bash\nsppnet eval --checkpoint c --data d --veiws full\n```\n")
    with pytest.raises(SystemExit):
        build_parser().parse_args(sppnet_arguments(command))
    assert "--veiws" in capsys.readouterr().err


def test_command_lines_are_read_as_a_shell_would():
    text = (
        "```bash\n"
        "OMP_NUM_THREADS=4 torchrun --nproc_per_node 2 -m sppnet eval-det --detector d \\\n"
        "    --data v   # a comment\n"
        "sppnet models && sppnet svm --features f\n"
        "THP_MEM_ALLOC_ENABLE=1 python benchmarks/spp_speed.py --repeats 2\n"
        "```\n"
        "```python\nsppnet = 1\n```\n"
    )
    commands = command_lines(text)
    assert [sppnet_arguments(c) for c in commands[:3]] == [
        ["eval-det", "--detector", "d", "--data", "v"],
        ["models"],
        ["svm", "--features", "f"],
    ]
    assert benchmark_arguments(commands[3]) == ("spp_speed", ["--repeats", "2"])
    assert len(commands) == 4


# Checks on what an example computed, beyond running without error: page -> check(scope).
def _pretrained(scope: dict) -> None:
    model, twin = scope["model"].eval(), scope["twin"].eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 181, 263)).shape == (1, 20)  # any size
        assert twin(torch.zeros(1, 3, 224, 224)).shape == (1, 20)  # the fixed size


def _detection(scope: dict) -> None:
    found = scope["found"]
    assert set(found) == {"boxes", "scores", "labels"}
    assert found["boxes"].shape[1:] == (4,)
    assert len(found["boxes"]) == len(found["scores"]) == len(found["labels"])


def _api(scope: dict) -> None:
    assert scope["pooled"].shape == (2, 8 * 50)
    assert scope["pool"](scope["x"]).shape == (2, 8 * (16 + 4 + 1))
    assert scope["kept"].tolist() == [0, 2]
    assert sorted(scope["per_class"].tolist()) == [0, 1, 2]
    assert scope["overlaps"].shape == (3, 3)


def _data(scope: dict) -> None:
    assert len(scope["scenes"]) == 2
    assert scope["target"]["boxes"].shape[1:] == (4,)


CHECKS: dict[str, Callable[[dict], None]] = {
    "pretrained.md": _pretrained,
    "detection.md": _detection,
    "api.md": _api,
    "data.md": _data,
}
PYTHON_PAGES = [p for p in PAGES if fenced_blocks(p.read_text(encoding="utf-8"), "python")]


def test_every_checked_page_has_python():
    assert set(CHECKS) <= {p.name for p in PYTHON_PAGES}


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=[p.name for p in PYTHON_PAGES])
def test_python_examples_run(page, tmp_path, monkeypatch):
    # a page's blocks run in order in one namespace, as a reader would paste them; files
    # an example writes land in tmp_path
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    scope: dict = {"__name__": "__docs__"}
    for block in fenced_blocks(page.read_text(encoding="utf-8"), "python"):
        exec(compile(block, str(page), "exec"), scope)
    CHECKS.get(page.name, lambda scope: None)(scope)


def _anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {_anchor(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("path", [ROOT / "README.md", *PAGES], ids=lambda p: p.name)
def test_links_between_pages_resolve(path):
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+://", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        assert linked.exists(), f"{path.name}: link to {target}: no such file"
        if anchor:
            assert anchor in _anchors(linked), f"{path.name}: link to {target}: no such heading"
