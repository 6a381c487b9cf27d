"""Flyte's own code bundler on a directory: `python flyte_bundle.py ROOT OUT_DIR`.

Runs `flyte._code_bundle.bundle.build_code_bundle(ROOT, dryrun=True, copy_style="all")` exactly as
`flyte deploy --copy-style all` does (listing, ignores, tar, then pigz when it is on PATH, else
in-memory gzip), and prints one JSON line: the bundle path, the number of files in it and the pigz
it found on PATH (null when none).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

from flyte._code_bundle.bundle import build_code_bundle


def main() -> None:
    root, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle = asyncio.run(build_code_bundle(root, dryrun=True, copy_style="all", copy_bundle_to=out_dir))
    print(json.dumps({"path": bundle.tgz, "files": len(bundle.files or ()), "pigz": shutil.which("pigz")}))


if __name__ == "__main__":
    main()
