"""``python -m inference``: the same as the ``serve`` console script (``inference.server``)."""

import sys

from inference.server import main

sys.exit(main())
