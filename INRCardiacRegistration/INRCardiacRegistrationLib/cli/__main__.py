"""``python -m INRCardiacRegistrationLib.cli COMMAND ...``: the command line (the worker runs this way)."""

import sys

from .main import main

sys.exit(main())
