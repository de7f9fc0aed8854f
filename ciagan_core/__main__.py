"""``python -m ciagan_core`` runs the ``ciagan`` command."""

import sys

from ciagan_core.cli import main

sys.exit(main())
