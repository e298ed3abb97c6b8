"""``python -m runs.cli``: the ``esc-eval`` command."""

import sys

from runs.cli import main

sys.exit(main())
