"""`python -m netdsl ARGS`: the same as `netdsl ARGS`."""

import sys

from netdsl.cli import main

sys.exit(main())
