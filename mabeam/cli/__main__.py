"""``python -m mabeam.cli``: the ``mabeam`` command."""

import sys

from . import main

sys.exit(main())
