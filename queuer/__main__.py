"""``python -m queuer``: the same as the ``queuer`` command."""

import sys

from .cli import main

sys.exit(main())
