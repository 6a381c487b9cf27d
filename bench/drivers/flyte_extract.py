"""Extract a bundle the way Flyte's task runtime does, then compare it with the source tree.

`python flyte_extract.py BUNDLE DEST SOURCE` calls `flyte._code_bundle.bundle.download_bundle` (what
`a0 --tgz ... --dest ...` runs in the container) and prints one JSON line: files extracted, files
whose bytes differ from SOURCE, and files missing on either side.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path

from flyte._code_bundle.bundle import download_bundle
from flyte.models import CodeBundle


def _digests(root: Path, skip: Path | None = None) -> dict[str, str]:
    found: dict[str, str] = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            if path == skip or name.startswith("."):
                continue  # the downloaded archive and the runtime's lock/marker files
            found[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def main() -> None:
    bundle, dest, source = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    archive = asyncio.run(
        download_bundle(CodeBundle(computed_version="bench", tgz=str(bundle), destination=str(dest)))
    )
    extracted = _digests(dest, skip=archive)
    expected = _digests(source)
    differ = sum(1 for name, digest in expected.items() if extracted.get(name, digest) != digest)
    missing = len(expected.keys() - extracted.keys()) + len(extracted.keys() - expected.keys())
    print(json.dumps({"files": len(extracted), "differ": differ, "missing": missing}))


if __name__ == "__main__":
    main()
