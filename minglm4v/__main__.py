"""`python -m minglm4v chat | info | check`: see minglm4v/cli.py."""

import sys

from .cli import main

sys.exit(main())
