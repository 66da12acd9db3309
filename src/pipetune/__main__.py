"""``python -m pipetune`` is the ``pipetune`` command."""

import sys

from pipetune.cli import main

sys.exit(main())
