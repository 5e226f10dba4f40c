"""``python -m infoscope``: the same as the ``infoscope`` command."""

import sys

from .cli import main

sys.exit(main())
