"""Our bundler as a library call, without the CLI: `python ours_bundle.py ROOT OUT_DIR`.

`deployer.bundle.select_files(ROOT, all)` then `build_bundle`; prints one JSON line (digest, file
count). Measured beside `flyte-deploy bundle` to separate the bundler from the CLI's start-up.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from deployer.bundle import build_bundle, select_files
from deployer.models import CopyStyle


def main() -> None:
    root, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    files = select_files(root, CopyStyle.all, (), ())
    artifact = build_bundle(root, files, out_dir)
    print(json.dumps({"digest": artifact.digest, "files": len(artifact.files)}))


if __name__ == "__main__":
    main()
