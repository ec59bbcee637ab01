"""Allow ``python -m privadx``."""

import sys

from privadx.cli import main

sys.exit(main())
