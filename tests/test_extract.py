"""Safe extraction: tar-slip archives refused, idempotent, safe under concurrent extraction."""

from __future__ import annotations

import io
import multiprocessing
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from deployer.bundle import build_bundle, extract_bundle, select_files
from deployer.bundle.extract import MARKER
from deployer.errors import BundleError
from deployer.models import BundleArtifact, CopyStyle
from tests.fixtures.bundle import MakeTree

Member = tuple[tarfile.TarInfo, bytes | None]


def _file(name: str, data: bytes = b"x") -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, linkname: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def _archive(path: Path, members: list[Member]) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def test_extracts_a_bundle_once_and_is_then_a_no_op(hello_bundle: BundleArtifact, tmp_path: Path) -> None:
    dest = tmp_path / "code"
    assert extract_bundle(hello_bundle.path, dest) == dest
    extracted = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert extracted == sorted([*hello_bundle.files, MARKER])
    assert (dest / MARKER).read_text().strip() == hello_bundle.digest
    with tarfile.open(hello_bundle.path) as tar:
        assert (dest / "workflows.py").read_bytes() == tar.extractfile("workflows.py").read()  # type: ignore[union-attr]

    # The marker says it is done: a second call touches nothing (a removed file stays removed).
    (dest / "workflows.py").unlink()
    assert extract_bundle(hello_bundle.path, dest) == dest
    assert not (dest / "workflows.py").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".code.lock", "code"], "no temp dirs left"


def test_extracting_into_an_existing_non_empty_directory_merges(
    hello_bundle: BundleArtifact, tmp_path: Path
) -> None:
    dest = tmp_path / "work"
    (dest / "hello_lib").mkdir(parents=True)
    (dest / "inputs.pb").write_bytes(b"keep me")
    (dest / "workflows.py").write_text("stale")
    extract_bundle(hello_bundle.path, dest)
    assert (dest / "inputs.pb").read_bytes() == b"keep me"
    assert (dest / "workflows.py").read_text() != "stale"
    assert (dest / "hello_lib" / "text.py").is_file()


def test_a_destination_holding_another_bundle_is_refused(make_tree: MakeTree, tmp_path: Path) -> None:
    bundles = []
    for text in ("one", "two"):
        root = make_tree({"app.py": f"x = '{text}'\n"}, name=text)
        bundles.append(build_bundle(root, select_files(root, CopyStyle.all, [], []), tmp_path / text))
    dest = tmp_path / "dest"
    extract_bundle(bundles[0].path, dest)
    with pytest.raises(BundleError, match=r"into .*dest: it holds another bundle"):
        extract_bundle(bundles[1].path, dest)
    assert (dest / "app.py").read_text() == "x = 'one'\n"
    (tmp_path / "a-file").write_text("")
    with pytest.raises(BundleError, match=r"a-file: it is not a directory"):
        extract_bundle(bundles[0].path, tmp_path / "a-file")


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([_file("ok.py"), _file("/etc/evil")], r"member '/etc/evil' has an absolute path"),
        ([_file("../evil.py")], r"member '\.\./evil\.py' has '\.\.' in its path"),
        ([_file("pkg/../../evil.py")], r"member 'pkg/\.\./\.\./evil\.py' has '\.\.' in its path"),
        (
            [_special("link", tarfile.SYMTYPE, "/etc/passwd")],
            r"member 'link' is a link to the absolute path /etc/passwd",
        ),
        (
            [_special("pkg/up", tarfile.SYMTYPE, "../../outside")],
            r"member 'pkg/up' is a link to \.\./\.\./outside, outside the destination",
        ),
        ([_special("hard", tarfile.LNKTYPE, "../outside")], r"member 'hard' is a link to \.\./outside"),
        (
            # Each link stays inside on paper; followed through the first one, the second leaves.
            [_special("here", tarfile.SYMTYPE, "."), _special("escape", tarfile.SYMTYPE, "here/..")],
            r"member 'escape'",
        ),
        ([_special("dev/null", tarfile.CHRTYPE)], r"member 'dev/null' is a device file"),
        ([_special("dev/sda", tarfile.BLKTYPE)], r"member 'dev/sda' is a device file"),
        ([_special("fifo", tarfile.FIFOTYPE)], r"member 'fifo' is a named pipe"),
    ],
    ids=[
        "absolute",
        "dotdot",
        "nested-dotdot",
        "symlink-absolute",
        "symlink-up",
        "hardlink-up",
        "symlink-chain",
        "char-device",
        "block-device",
        "fifo",
    ],
)
def test_tar_slip_archives_are_refused_and_nothing_is_written(
    tmp_path: Path, members: list[Member], message: str
) -> None:
    archive = _archive(tmp_path / "evil.tar.gz", [_file("first.py"), *members])
    dest = tmp_path / "box" / "dest"
    with pytest.raises(BundleError, match=r"refusing to extract evil\.tar\.gz: " + message):
        extract_bundle(archive, dest)
    assert not dest.exists()
    assert [p.name for p in (tmp_path / "box").iterdir()] == [".dest.lock"], "temp dir removed"
    assert not (tmp_path / "evil.py").exists() and not (tmp_path / "outside").exists()


def test_a_truncated_archive_is_an_error_and_leaves_nothing(
    hello_bundle: BundleArtifact, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(hello_bundle.path.read_bytes()[: hello_bundle.size // 2])
    with pytest.raises(BundleError, match=r"cannot extract .*broken\.tar\.gz"):
        extract_bundle(broken, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def _extract_when_released(archive: str, dest: str, barrier: object, results: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    try:
        extract_bundle(Path(archive), Path(dest))
        results.put("ok")  # type: ignore[attr-defined]
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(f"{type(exc).__name__}: {exc}")  # type: ignore[attr-defined]


def test_two_processes_extracting_one_bundle_at_once_both_succeed(
    make_tree: MakeTree, tmp_path: Path
) -> None:
    root = make_tree({f"pkg{i % 10}/mod{i}.py": f"value = {i}\n" * 200 for i in range(400)})
    artifact = build_bundle(root, select_files(root, CopyStyle.all, [], []), tmp_path / "bundle")
    dest = tmp_path / "shared" / "code"
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers: list[multiprocessing.process.BaseProcess] = [
        context.Process(target=_extract_when_released, args=(str(artifact.path), str(dest), barrier, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert outcomes == ["ok", "ok"]
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == sorted([*artifact.files, MARKER])
    assert (dest / "pkg3" / "mod13.py").read_text() == "value = 13\n" * 200
    leftovers: Callable[[Path], list[str]] = lambda d: sorted(p.name for p in d.iterdir())  # noqa: E731
    assert leftovers(dest.parent) == [".code.lock", "code"]
