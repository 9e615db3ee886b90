"""``python -m ncf_launch``: the same as the ``ncf`` console script (``ncf_launch.cli``)."""

import sys

from ncf_launch.cli import main

sys.exit(main())
