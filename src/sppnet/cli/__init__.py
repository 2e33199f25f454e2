"""The ``sppnet`` command: parses arguments and calls the engine; nothing else.

One module per command group, each holding its subcommands' parsers and handlers:

- :mod:`~sppnet.cli.classify`: ``models``, ``train``, ``eval``, ``predict``
- :mod:`~sppnet.cli.transfer`: ``features``, ``svm``
- :mod:`~sppnet.cli.detection`: ``train-det``, ``eval-det``, ``detect``
- :mod:`~sppnet.cli.export`, :mod:`~sppnet.cli.demo`, :mod:`~sppnet.cli.convert`

Shared pieces: :mod:`~sppnet.cli.options` (argument builders), :mod:`~sppnet.cli.device`
(the one ``--device`` policy), :mod:`~sppnet.cli.checks` (option values checked before any
work) and :mod:`~sppnet.cli.app` (the parser and the one error boundary, :func:`main`).
Handlers import torch and the engine themselves, so ``sppnet --help`` loads neither.

Examples:
    sppnet --help
    sppnet models --width 0.25 --input 224 180 137x251
"""

from sppnet.cli.app import build_parser, main
from sppnet.cli.checks import MAX_IMAGE_SIDE
from sppnet.cli.options import LITE_MODELS

# the name the tests and earlier releases used
_LITE_MODELS = LITE_MODELS

__all__ = ["MAX_IMAGE_SIDE", "build_parser", "main"]
