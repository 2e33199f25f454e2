"""The ``sppnet`` command: its parser and its one error boundary.

:func:`build_parser` gathers the subcommands of each command group (``classify``,
``transfer``, ``detection``, ``export``, ``demo``, ``convert``, ``make-data``); :func:`main`
checks the options (:mod:`sppnet.cli.checks`), runs the chosen handler, and turns every
expected failure into one ``error:`` line.

Examples:
    sppnet --help
    sppnet models
    sppnet models --width 0.25 --input 224 180 137x251
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from sppnet import __version__
from sppnet.cli import classify, convert, demo, detection, export, make_data, transfer
from sppnet.cli._common import torchrun_rank
from sppnet.cli.checks import check_options
from sppnet.errors import EXPECTED_ERRORS

__all__ = ["build_parser", "main"]

_EPILOG = """\
examples:
  sppnet demo                            the main job: classifier + detector, report (~11 min)
  sppnet models                          the paper's four networks and their geometry
  sppnet models --input 224 180 137x251  conv5 map sizes for these inputs
  python -m sppnet --version
"""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``error:`` line (exit code 2), as every other
    expected failure of the command, with a pointer to the usage instead of printing it."""

    def error(self, message: str) -> NoReturn:
        """Print ``error: MESSAGE; see: PROG --help`` on stderr and exit with code 2."""
        text = " ".join(message.split())
        self.exit(2, f"error: {text}; see: {self.prog} --help\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """As argparse's, but an unknown option is reported by its subcommand's parser (its
        ``--help`` is the one to read)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            subcommand = self._subcommand(getattr(parsed, "command", None))
            subcommand.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _subcommand(self, name: str | None) -> argparse.ArgumentParser:
        """The parser of subcommand ``name``, or this one."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and name in action.choices:
                return action.choices[name]
        return self


# what an interrupted (Ctrl-C) command leaves, and how to continue it
_AGAIN = "stopped before the end, nothing to resume: run the command again"
_RESUME = {
    "train": "run the same command with --resume to continue from the last finished epoch",
    "train-det": "run the same command again to continue (finished stages and cached "
    "images are reused)",
    "demo": "run the same command again to continue (finished stages are reused)",
    "features": "run the same command again to continue (the batches written are kept)",
    "eval-det": "run the same command again (the proposals computed are cached)",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sppnet`` command (subcommands and their options).

    A bad argument ends it with one line ``error: ...; see: sppnet COMMAND --help`` on
    stderr and ``SystemExit(2)``.
    """
    parser = _Parser(
        prog="sppnet",
        description="Spatial pyramid pooling networks (He et al., TPAMI 2015): "
        "classification at any image size and detection with shared convolutions.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sppnet {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of expected errors too (or set SPPNET_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (  # the order of `sppnet --help`
        classify.add_models_parser,
        classify.add_eval_parser,
        classify.add_train_parser,
        transfer.add_svm_parser,
        transfer.add_features_parser,
        detection.add_train_det_parser,
        detection.add_eval_det_parser,
        detection.add_detect_parser,
        export.add_export_parser,
        classify.add_predict_parser,
        demo.add_demo_parser,
        convert.add_convert_parser,
        make_data.add_make_data_parser,
    ):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sppnet`` command; returns the process exit code.

    The one error boundary: an expected failure (:data:`sppnet.errors.EXPECTED_ERRORS`: a
    bad file, option value, device or output folder) ends as one ``error: ...`` line on
    stderr and exit code 2 (a training loss gone NaN: 1); Ctrl-C is one ``interrupted:``
    line (how to continue, where the command can) and exit code 130; anything else is a bug
    and keeps its traceback. ``--debug`` or ``SPPNET_DEBUG=1`` re-raises expected failures
    (and Ctrl-C) as well.
    """
    parser = build_parser()
    args = parser.parse_args(argv)  # SystemExit: --help, --version, an argument error (2)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    _memory_policy()
    debug = args.debug or os.environ.get("SPPNET_DEBUG", "") not in ("", "0")
    try:
        check_options(args)  # before any work: data generated, images read, epochs run
        return int(args.func(args))
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"interrupted: {_RESUME.get(args.command, _AGAIN)}", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports it
    except EXPECTED_ERRORS as err:
        if debug:
            raise
        return _report(err)
    except OSError as err:  # a full disk where no writer named the file
        from sppnet.errors import DiskFullError, is_disk_full

        if debug or not is_disk_full(err):
            raise
        return _report(DiskFullError(err.filename or "a file of this command's output"))
    except RuntimeError as err:
        from sppnet.classify.train import NonFiniteLossError  # torch is loaded

        if debug or not isinstance(err, NonFiniteLossError):
            raise
        return _report(err, code=1)  # named, with the checkpoint to resume from


def _report(err: BaseException, code: int | None = None) -> int:
    """Print ``err`` as one ``error:`` line on stderr; return the exit code."""
    text = _worker_message(str(err))
    if isinstance(err, OSError) and getattr(err, "filename", None) is not None:
        text = f"{err.filename}: {err.strerror or text}"
    if isinstance(err, ImportError) and not text:
        text = f"missing package {err.name}"
    rank = torchrun_rank()
    if rank > 0:  # under torchrun every process reports its own error: say which
        text = f"[rank {rank}] {text}"
    print("error: " + " ".join(text.split()), file=sys.stderr)
    return code if code is not None else int(getattr(err, "exit_code", 2))


def _worker_message(text: str) -> str:
    """The error's own message where a DataLoader worker re-raised it with its traceback
    ("Caught X in DataLoader worker process 0. Original Traceback ...: X: message")."""
    if not (text.startswith("Caught ") and "Original Traceback" in text):
        return text
    last = text.rstrip().splitlines()[-1]  # "package.module.ErrorName: message"
    name, _, message = last.partition(": ")
    return message if message and " " not in name else text


def _memory_policy() -> None:
    """Let torch back large CPU tensors with transparent huge pages, unless the user chose,
    and keep freed memory for reuse (:func:`sppnet.memory.keep_freed_memory`; off with
    ``SPPNET_KEEP_FREED_MEMORY=0``).

    PyTorch reads ``THP_MEM_ALLOC_ENABLE`` when it allocates; with it, fresh multi-megabyte
    activations stop page-faulting on every forward pass: the pretrained Lite trunk runs
    1.2-1.8x faster on 2 cores (benchmarks/lite_trunk_speed.py times it both ways).
    Subprocesses (data workers, proposal pools) inherit it.
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    if os.environ.get("SPPNET_KEEP_FREED_MEMORY", "1").strip() != "0":
        from sppnet.memory import keep_freed_memory

        keep_freed_memory()  # large buffers stay mapped from one image or batch to the next


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
