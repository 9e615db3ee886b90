"""``python -m training``: the same as the ``train`` console script (``training.main``)."""

import sys

from training.main import main

sys.exit(main())
