"""``python -m esc_eval.runs.cli``: the ``esc-eval`` command."""

import sys

from esc_eval.runs.cli import main

sys.exit(main())
