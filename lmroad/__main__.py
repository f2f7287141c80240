"""``python -m lmroad train|sample|eval|road``: see ``lmroad.cli``."""

import sys

from .cli import main

sys.exit(main())
