"""Entry point of ``python -m bgimpact.bench``."""

import sys

from bgimpact.bench import main

sys.exit(main())
