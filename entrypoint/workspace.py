"""The checkout belongs to the runner's user; this container runs as root. Nothing the action leaves in
the workspace may stay owned by root, or the job's later steps (and a self-hosted runner's next
checkout) get `Permission denied`.

So while the action runs: no bytecode caches are written next to imported user code, git takes no
optional locks (a `git status` would rewrite `.git/index`), and the state directory lives in the
runner's temp directory, not the checkout (`entrypoint.inputs.to_request`). Whatever is still created
in the workspace is handed back to the workspace's owner at the end.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def left_as_found(workspace: Path) -> Iterator[None]:
    owner = _owner(workspace)
    bytecode, locks = sys.dont_write_bytecode, os.environ.get("GIT_OPTIONAL_LOCKS")
    sys.dont_write_bytecode = True
    os.environ["GIT_OPTIONAL_LOCKS"] = "0"
    try:
        yield
    finally:
        sys.dont_write_bytecode = bytecode
        if locks is None:
            os.environ.pop("GIT_OPTIONAL_LOCKS", None)
        else:
            os.environ["GIT_OPTIONAL_LOCKS"] = locks
        if owner is not None:
            _give_back(workspace, *owner)


def _owner(workspace: Path) -> tuple[int, int] | None:
    """The workspace owner's uid and gid, when they are not ours (only then can files go astray)."""
    try:
        st = workspace.stat()
    except OSError:
        return None
    return None if st.st_uid == os.getuid() else (st.st_uid, st.st_gid)


def _give_back(workspace: Path, uid: int, gid: int) -> None:
    me = os.getuid()
    for dirpath, dirnames, filenames in os.walk(workspace):
        for name in (*dirnames, *filenames):
            path = os.path.join(dirpath, name)
            with contextlib.suppress(OSError):
                if os.lstat(path).st_uid == me:
                    os.lchown(path, uid, gid)
