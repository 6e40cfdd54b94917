"""`python -m core VERB ...`."""

import sys

from core.cli import main

sys.exit(main())
