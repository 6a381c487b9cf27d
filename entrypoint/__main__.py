"""`python -m entrypoint`: the action image's ENTRYPOINT, supervised like the CLI (`deployer.supervise`)."""

import sys

from entrypoint.action import ended_early, main, supervised_run

finished = supervised_run(main)
if finished.problem:
    ended_early(finished.problem)
sys.exit(finished.code)
