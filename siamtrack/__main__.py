"""``python -m siamtrack``: the same as the ``siamtrack`` console script."""
import sys

from .cli import main

sys.exit(main())
