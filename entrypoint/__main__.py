"""`python -m entrypoint`: the action image's ENTRYPOINT."""

import sys

from entrypoint.action import main

sys.exit(main())
