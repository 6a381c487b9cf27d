"""The project's code as an image layer, written without any Docker engine.

The layer is the bundle writer's tar (sorted entries, fixed mtime, root owner, modes 0644/0755)
with every path under the image's working directory, gzip-compressed by the bundle's deterministic
compressor. So one commit gives one layer, byte for byte, on any machine; its `diff_id` (sha256 of
the tar) and `digest` (sha256 of the gzip blob) are computed while it is written to a file, never
held in memory.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deployer.bundle.archive import write_tar
from deployer.bundle.pgzip import ParallelGzipWriter
from deployer.errors import BuildError, BundleError
from deployer.images.renderers import CodeFiles


@dataclass(frozen=True)
class CodeLayer:
    path: Path
    """The gzip blob."""
    digest: str
    """`sha256:...` of the blob (what manifests list)."""
    diff_id: str
    """`sha256:...` of the uncompressed tar (what the image config lists)."""
    size: int
    prefix: str
    """Where the code lands in the image (absolute)."""


def code_destination(workdir: str, dst: str) -> str:
    """The absolute folder the code goes to: `dst` under the image's working directory (`/` if unset)."""
    base = workdir if workdir.startswith("/") else "/" + workdir
    joined = posixpath.normpath(posixpath.join(base, dst or "."))
    return joined if joined.startswith("/") else "/" + joined


def write_code_layer(code: CodeFiles, destination: str, out_dir: Path) -> CodeLayer:
    """Write the layer of `code` placed at `destination` into a file under `out_dir`."""
    diff, blob = hashlib.sha256(), hashlib.sha256()
    size = 0
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=out_dir, prefix="code-layer-", suffix=".tar.gz")
    path = Path(name)
    handle = os.fdopen(fd, "wb")

    def sink(data: bytes) -> None:
        nonlocal size
        blob.update(data)
        size += len(data)
        handle.write(data)

    gzip = ParallelGzipWriter(sink)

    class _Tee:
        def write(self, data: bytes) -> None:
            diff.update(data)
            gzip.write(data)

    try:
        with handle:
            try:
                write_tar(code.root_dir, code.files, _Tee(), prefix=destination.strip("/"))
            except BaseException:
                gzip.abort()
                raise
            gzip.close()
    except BundleError as exc:
        path.unlink(missing_ok=True)
        raise BuildError(f"code layer: {exc}") from exc
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return CodeLayer(
        path=path,
        digest=f"sha256:{blob.hexdigest()}",
        diff_id=f"sha256:{diff.hexdigest()}",
        size=size,
        prefix=destination,
    )
