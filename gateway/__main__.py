"""``python -m gateway``: the same as the ``hookgate`` command."""

import sys

from gateway.cli import main

sys.exit(main())
