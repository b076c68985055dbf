"""`python -m focalnet_edge.cli`."""

import sys

from . import main

sys.exit(main())
