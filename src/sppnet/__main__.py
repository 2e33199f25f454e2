"""``python -m sppnet`` runs the ``sppnet`` command."""

import sys

from sppnet.cli import main

sys.exit(main())
