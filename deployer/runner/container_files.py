"""Container mode: File/Dir outputs a task leaves in its container's own filesystem.

When the raw-data path is local, Flyte's runtime skips the upload of `File.from_local(path)` and
`Dir.from_local(path)` and hands back `path` itself: wherever the task wrote it (its working dir,
`/tmp`, ...). In container mode that is inside the container, not on the mounted action dir, so such
paths are copied out of the stopped container (same absolute layout under `copied`) before it is
removed, and read from there.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.errors import RunError


@dataclass(frozen=True)
class ContainerFiles:
    """Where the host finds the files a container-mode task refers to by its own paths."""

    mounted: Path
    """The action dir, mounted at the same path inside the container."""
    copied: Path
    """Paths outside it, copied out of the container: `/root/report.txt` → `copied/root/report.txt`."""

    def on_host(self, path: str) -> Path:
        """Where the container's absolute `path` is read on the host."""
        inside = Path(os.path.normpath(path))  # `/x/../../etc` is `/etc`: never above `copied`
        if inside.is_relative_to(self.mounted):
            return inside
        return self.copied / inside.relative_to("/")

    def holds(self, path: Path) -> bool:
        """Whether `path`, links resolved, is one of the container's files (on the mount or copied)."""
        real = Path(os.path.realpath(path))
        return real.is_relative_to(os.path.realpath(self.mounted))


def copy_out(container: Any, paths: list[str], files: ContainerFiles) -> None:
    """Copy each of the container's `paths` (files or directory trees) to `files.on_host(path)`."""
    from docker.errors import DockerException, NotFound

    for path in paths:
        if not Path(path).is_absolute():
            continue  # relative to the container's working dir: reading the outputs refuses it
        target = files.on_host(path)
        if target.is_relative_to(files.mounted) and not target.is_relative_to(files.copied):
            continue  # on the mount already
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            stream, _stat = container.get_archive(path)
            with tempfile.TemporaryFile(dir=files.copied) as archive:
                for chunk in stream:
                    archive.write(chunk)
                archive.seek(0)
                with tarfile.open(fileobj=archive) as tar:
                    # get_archive names the entry by the path's last component: extract it next to it.
                    tar.extractall(target.parent, filter="data")
        except NotFound:
            continue  # gone before the task ended: reading the output says so
        except (DockerException, tarfile.TarError, OSError) as exc:
            raise RunError(f"cannot copy the task's output {path} out of its container: {exc}") from exc
