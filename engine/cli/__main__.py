"""``python -m engine.cli``: the same as the ``lifecycle`` command."""

import sys

from engine.cli.main import main

sys.exit(main())
