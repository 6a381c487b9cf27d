"""Code bundles: file selection per copy style, ignore rules, symlinks, and byte-exact output."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer.bundle import build_bundle, bundle_spec, env_includes, select, select_files
from deployer.bundle.archive import FIXED_MTIME, write_archive
from deployer.errors import BundleError
from deployer.models import CopyStyle
from tests.fixtures.bundle import MakeTree, write_tree
from tests.fixtures.gitrepo import MakeGitRepo, git_env

FLYTE_DEPLOY = Path(sys.executable).with_name("flyte-deploy")


def _members(archive: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(archive, "r:gz") as tar:
        return tar.getmembers()


def _contents(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def _all(root: Path) -> tuple[str, ...]:
    return select_files(root, CopyStyle.all, [], [])


# --------------------------------------------------------------------------- determinism


def _text_blob(size: int, seed: int) -> bytes:
    """Compressible, non-repeating text, so the archive spans several compression blocks."""
    rnd = random.Random(seed)
    words = [f"w{rnd.randrange(10_000)}" for _ in range(2_000)]
    out = bytearray()
    while len(out) < size:
        out += (" ".join(rnd.choice(words) for _ in range(12)) + "\n").encode()
    return bytes(out[:size])


LONG_NAME = "pkg/" + "/".join(["a_fairly_long_directory_name"] * 5) + "/module_with_a_long_name.py"

FLAT_LAYOUT = {
    "README.md": "# awesome\n",
    "pyproject.toml": '[project]\nname = "awesome"\n',
    "awesome_package/__init__.py": "",
    "awesome_package/module.py": "def answer() -> int:\n    return 42\n",
    "awesome_package/sub/__init__.py": "",
    "awesome_package/sub/deep.py": "from awesome_package.module import answer\n",
    "tools/generate.py": "#!/usr/bin/env python3\nprint('generated')\n",
    "data/lookup.csv": "a,b\n1,2\n",
    "données/été.py": "x = 'non-ascii path'\n",
    LONG_NAME: "y = 1\n",
    ".gitignore": "*.log\n",
}


def _clone(source: Path, dest: Path, umask: int) -> Path:
    subprocess.run(
        ["git", "clone", "--quiet", "--no-local", str(source), str(dest)],
        env=git_env(),
        check=True,
        preexec_fn=lambda: os.umask(umask),
    )
    return dest


def _reverse_directory_order(root: Path) -> None:
    """Re-create every directory's entries in their listed order: tmpfs lists entries newest
    first, so the listing order flips."""
    for directory, _dirs, _files in os.walk(root, topdown=False):
        if ".git" in Path(directory).parts:
            continue
        names = [n for n in os.listdir(directory) if n != ".git"]
        parking = Path(tempfile.mkdtemp(dir=directory, prefix=".park-"))
        for name in names:
            os.rename(os.path.join(directory, name), parking / name)
        for name in names:
            os.rename(parking / name, os.path.join(directory, name))
        parking.rmdir()


def _listing_orders(root: Path) -> dict[str, list[str]]:
    return {
        str(Path(d).relative_to(root)): os.listdir(d)
        for d, _dirs, _files in os.walk(root)
        if ".git" not in Path(d).parts
    }


@pytest.fixture
def scratch_tmpfs() -> Iterator[Path]:
    """A directory on tmpfs, where listing order follows creation order (so it can be changed)."""
    path = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="flyte-deploy-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_two_clones_of_one_commit_give_byte_identical_bundles(
    make_git_repo: MakeGitRepo, scratch_tmpfs: Path, tmp_path: Path
) -> None:
    files: dict[str, str | bytes] = {**FLAT_LAYOUT, "awesome_package/big.txt": _text_blob(3 << 20, seed=1)}
    origin = make_git_repo(files=files)
    origin.write("tools/generate.py", files["tools/generate.py"], mode=0o755)
    origin.commit("make the tool executable")

    first = _clone(origin.path, scratch_tmpfs / "first", umask=0o022)
    second = _clone(origin.path, scratch_tmpfs / "second", umask=0o077)
    _reverse_directory_order(second)
    first_order, second_order = _listing_orders(first), _listing_orders(second)
    assert first_order.keys() == second_order.keys()
    assert all(sorted(first_order[d]) == sorted(second_order[d]) for d in first_order)
    assert first_order["awesome_package"] != second_order["awesome_package"]
    rnd = random.Random(7)
    for path in second.rglob("*"):
        if ".git" not in path.parts:
            os.utime(path, (rnd.randrange(10**9), rnd.randrange(10**9)), follow_symlinks=False)
    # Untracked leftovers the standard ignores must keep out.
    leftovers = {"awesome_package/__pycache__/module.cpython-311.pyc": b"\0", "build/x.py": "", "run.log": ""}
    write_tree(second, leftovers)

    assert (second / "tools/generate.py").stat().st_mode & 0o777 == 0o700
    assert (second / "README.md").stat().st_mode & 0o777 == 0o600

    one = build_bundle(first, _all(first), tmp_path / "one")
    two = build_bundle(second, _all(second), tmp_path / "two")
    assert one.path.read_bytes() == two.path.read_bytes()
    assert one.digest == two.digest == hashlib.sha256(one.path.read_bytes()).hexdigest()
    assert one.path.name == f"{one.digest}.tar.gz"
    spec = bundle_spec(second, CopyStyle.all, [], [])
    assert spec is not None and spec.digest == one.digest and spec.size == one.size

    expected = sorted(set(files) | {"awesome_package/big.txt"})
    members = _members(one.path)
    assert [m.name for m in members] == expected == list(one.files)
    for member in members:
        assert member.isreg()
        owner = (member.uid, member.gid, member.uname, member.gname)
        assert (member.mtime, owner) == (FIXED_MTIME, (0, 0, "", ""))
        assert member.mode == (0o755 if member.name == "tools/generate.py" else 0o644)
    assert _contents(one.path)["awesome_package/big.txt"] == files["awesome_package/big.txt"]

    raw = one.path.read_bytes()
    assert raw[:3] == b"\x1f\x8b\x08" and raw[3] == 0, "no FNAME/FEXTRA/FCOMMENT flags"
    assert raw[4:8] == b"\0\0\0\0", "gzip mtime must be 0"
    listed = subprocess.run(["tar", "-tzf", str(one.path)], capture_output=True, text=True, check=True)
    assert listed.stdout.splitlines() == expected


def test_compression_output_does_not_depend_on_thread_count(make_tree: MakeTree) -> None:
    root = make_tree({"a.txt": _text_blob(3 << 20, seed=2), "b.bin": random.Random(3).randbytes(1 << 19)})
    outputs = []
    for threads in (1, 2, 5):
        chunks: list[bytes] = []
        write_archive(root, ["a.txt", "b.bin"], chunks.append, threads=threads)
        outputs.append(b"".join(chunks))
    assert outputs[0] == outputs[1] == outputs[2]
    assert len(outputs[0]) < (3 << 20)  # the text compressed; 4 blocks in, one gzip stream out
    with tarfile.open(fileobj=gzip.GzipFile(fileobj=io.BytesIO(outputs[0]))) as tar:
        assert tar.extractfile("a.txt").read() == (root / "a.txt").read_bytes()  # type: ignore[union-attr]


def test_an_empty_file_and_an_exact_block_multiple_round_trip(make_tree: MakeTree, tmp_path: Path) -> None:
    # 1 MiB minus the 512-byte header and the end-of-archive padding lands on block boundaries.
    root = make_tree({"empty.py": "", "exact.bin": b"x" * ((1 << 20) - 512)})
    artifact = build_bundle(root, _all(root), tmp_path)
    assert _contents(artifact.path) == {"empty.py": b"", "exact.bin": b"x" * ((1 << 20) - 512)}


# --------------------------------------------------------------------------- ignore rules


def test_copy_style_all_applies_standard_gitignore_and_flyteignore_rules(make_git_repo: MakeGitRepo) -> None:
    repo = make_git_repo(
        files={
            ".gitignore": "*.csv\n!keep.csv\n/top_only.txt\nsecrets/\ndata/\n!data/wanted.txt\n",
            ".flyteignore": "big_assets/\nnotes.md\n",
            "sub/.gitignore": "!*.csv\nlocal.txt\n",
            "sub/deeper/.flyteignore": "!notes.md\n",
            "a.py": "",
            "x.csv": "",
            "keep.csv": "",
            "top_only.txt": "",
            "sub/top_only.txt": "",
            "secrets/key.txt": "",
            "data/wanted.txt": "",
            "sub/x.csv": "",
            "sub/local.txt": "",
            "sub/deeper/local.txt": "",
            "notes.md": "",
            "sub/notes.md": "",
            "sub/deeper/notes.md": "",
            "big_assets/model.bin": "",
        }
    )
    write_tree(
        repo.path,
        {
            "__pycache__/a.cpython-311.pyc": b"\0",
            "pkg/__pycache__/b.cpython-311.pyc": b"\0",
            "pkg/mod.pyc": b"\0",
            "pkg/mod.py": "",
            ".venv/lib/site.py": "",
            "venv/lib/site.py": "",
            "myenv/pyvenv.cfg": "home = /usr/bin\n",
            "myenv/lib/site.py": "",
            "dist/awesome-1.0-py3-none-any.whl": b"\0",
            "build/lib/a.py": "",
            "awesome.egg-info/PKG-INFO": "",
            ".flyte-deploy/bundles/x.tar.gz": b"\0",
            ".mypy_cache/x.json": "",
            ".pytest_cache/v": "",
            ".env": "SECRET=1\n",
            "app.log": "",
            "pkg/nested/dist/keep_out.py": "",
        },
    )
    assert _all(repo.path) == (
        ".flyteignore",
        ".gitignore",
        "a.py",
        "keep.csv",
        "pkg/mod.py",
        "sub/.gitignore",
        "sub/deeper/.flyteignore",
        "sub/deeper/notes.md",
        "sub/top_only.txt",
        "sub/x.csv",
    )


def test_ignore_files_above_root_dir_apply_like_git(make_git_repo: MakeGitRepo) -> None:
    """src layout: root_dir is repo/src, the repository's own ignore files still count."""
    repo = make_git_repo(
        files={
            ".gitignore": "*.tmp\n",
            ".flyteignore": "private/\n",
            "src/app/__init__.py": "",
            "src/app/main.py": "",
            "src/app/scratch.tmp": "",
            "src/private/notes.py": "",
        }
    )
    root = repo.path / "src"
    assert _all(root) == ("app/__init__.py", "app/main.py")
    loaded = [root / "app/main.py", root / "private/notes.py"]
    assert select_files(root, CopyStyle.loaded_modules, loaded, []) == ("app/main.py",)


def test_a_git_file_never_ships_and_undecodable_names_are_refused(make_tree: MakeTree) -> None:
    # `.git` is a file in a submodule's (and a linked worktree's) checkout.
    root = make_tree({"app.py": "", "lib/.git": "gitdir: ../.git/modules/lib\n", "lib/helper.py": ""})
    assert _all(root) == ("app.py", "lib/helper.py")
    assert select_files(root, CopyStyle.all, [], ["lib"]) == ("app.py", "lib/helper.py")

    bad = os.fsdecode(b"data/caf\xe9.csv")
    write_tree(root, {bad: "1,2\n", "data/ok-\u00e9.csv": "3,4\n"})
    with pytest.raises(BundleError, match=r"^data/caf\\xe9\.csv: the file name is not valid UTF-8"):
        select(root, CopyStyle.all, [], [])
    # Ignore patterns still match such a name (its bad byte reads as one character), and `!` works.
    (root / ".flyteignore").write_text("data/caf?.csv\n")
    assert "data/ok-\u00e9.csv" in _all(root)
    (root / ".flyteignore").write_text("data/*\n!data/ok-*\n")
    assert _all(root) == (".flyteignore", "app.py", "data/ok-\u00e9.csv", "lib/helper.py")


def test_ignore_patterns_that_backtrack_in_python_re_keep_their_meaning(make_tree: MakeTree) -> None:
    pattern = "*a" * 16 + "*b"
    root = make_tree(
        {
            ".flyteignore": f"{pattern}\n!keep*\nsub/\n",
            "a" * 30: "",
            "a" * 30 + "b": "",
            "keep-ab": "",
            "sub/x": "",
        }
    )
    assert _all(root) == (".flyteignore", "a" * 30, "keep-ab")


def test_loaded_modules_keeps_loaded_files_under_root_minus_flyteignore(
    make_git_repo: MakeGitRepo, tmp_path: Path
) -> None:
    repo = make_git_repo(
        files={
            ".gitignore": "generated_by_git.py\n",
            ".flyteignore": "lib/secret.py\ngen/\n",
            "app.py": "",
            "lib/__init__.py": "",
            "lib/util.py": "",
            "lib/secret.py": "",
            "lib/unused.py": "",
            "gen/x.py": "",
            "generated_by_git.py": "",
        }
    )
    outside = write_tree(tmp_path / "elsewhere", {"other.py": ""}) / "other.py"
    root = repo.path
    loaded = [root / p for p in ("app.py", "lib/util.py", "lib/secret.py", "gen/x.py", "generated_by_git.py")]
    # Flyte's loaded_modules ignores .gitignore; .flyteignore applies in every mode here.
    assert select_files(root, CopyStyle.auto, [*loaded, outside], []) == (
        "app.py",
        "generated_by_git.py",
        "lib/util.py",
    )


def test_copy_style_none_has_no_bundle_and_empty_selections_are_errors(make_tree: MakeTree) -> None:
    root = make_tree({"app.py": ""})
    assert bundle_spec(root, CopyStyle.none, [root / "app.py"], []) is None
    assert select_files(root, CopyStyle.none, [root / "app.py"], []) == ()
    with pytest.raises(BundleError, match=r"nothing to bundle under .*loaded_modules.*no imported module"):
        bundle_spec(root, CopyStyle.loaded_modules, [], [])
    with pytest.raises(BundleError, match=r"root_dir .*missing is not a directory"):
        select_files(root / "missing", CopyStyle.all, [], [])


# --------------------------------------------------------------------------- include


def test_includes_add_files_directories_and_globs(make_tree: MakeTree) -> None:
    root = make_tree(
        {
            ".flyteignore": "*.secret\n",
            "app.py": "",
            "config/settings.yaml": "a: 1\n",
            "assets/a.txt": "",
            "assets/__pycache__/x.cpython-311.pyc": b"\0",
            "assets/b.log": "",
            "assets/c.secret": "",
            "templates/x.html": "",
            "templates/y.html": "",
            "templates/z.txt": "",
        }
    )
    includes = ["config/settings.yaml", str(root / "assets"), "templates/*.html"]
    spec = bundle_spec(root, CopyStyle.loaded_modules, [root / "app.py"], includes)
    assert spec is not None
    assert spec.files == (
        "app.py",
        "assets/a.txt",
        "config/settings.yaml",
        "templates/x.html",
        "templates/y.html",
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("../outside.txt", r"include '\.\./outside\.txt' is outside root_dir"),
        ("missing/*.txt", r"include 'missing/\*\.txt' matches no file under root_dir"),
    ],
)
def test_bad_includes_are_errors_naming_the_entry(make_tree: MakeTree, entry: str, message: str) -> None:
    root = make_tree({"app.py": ""})
    (root.parent / "outside.txt").write_text("")
    with pytest.raises(BundleError, match=message):
        select_files(root, CopyStyle.all, [], [entry])


def test_env_includes_anchor_relative_entries_at_the_declaring_file() -> None:
    import flyte
    from flyte._environment import _ENVIRONMENT_REGISTRY

    env = flyte.TaskEnvironment(name="with-include", include=("conf/app.yaml", "/abs/data"))
    try:
        assert env_includes([env]) == (str(Path(__file__).parent / "conf/app.yaml"), "/abs/data")
    finally:
        _ENVIRONMENT_REGISTRY.remove(env)


# --------------------------------------------------------------------------- symlinks and special files


def test_symlinks_inside_the_project_bundle_their_target_content(make_tree: MakeTree, tmp_path: Path) -> None:
    root = make_tree({"real/data.txt": "payload\n", "real/more/x.py": "x = 1\n"})
    (root / "link_file.txt").symlink_to("real/data.txt")
    (root / "linkdir").symlink_to("real")
    (root / "dangling").symlink_to("real/nothing-here")
    selection = select(root, CopyStyle.all, [], [])
    assert selection is not None
    assert selection.files == (
        "link_file.txt",
        "linkdir/data.txt",
        "linkdir/more/x.py",
        "real/data.txt",
        "real/more/x.py",
    )
    assert any("dangling" in w for w in selection.warnings)
    artifact = build_bundle(root, selection.files, tmp_path)
    contents = _contents(artifact.path)
    assert contents["link_file.txt"] == contents["linkdir/data.txt"] == b"payload\n"
    assert all(m.isreg() for m in _members(artifact.path))


@pytest.mark.parametrize(
    ("make_link", "message"),
    [
        (
            lambda root, out: (root / "escape.txt").symlink_to(out / "secret.txt"),
            r"symlink escape\.txt points outside",
        ),
        (lambda root, out: (root / "outdir").symlink_to(out), r"symlink outdir points outside"),
        (lambda root, out: (root / "gone").symlink_to(out / "missing"), r"symlink gone points outside"),
        (
            lambda root, _out: (
                (root / "loop_a").symlink_to("loop_b"),
                (root / "loop_b").symlink_to("loop_a"),
            ),
            r"symlink loop at loop_a",
        ),
        (lambda root, out: (root / "pkg/up").symlink_to(".."), r"symlink loop at pkg/up"),
    ],
    ids=["file-outside", "dir-outside", "dangling-outside", "loop", "points-to-ancestor"],
)
def test_escaping_or_looping_symlinks_are_errors_naming_the_link(
    make_tree: MakeTree, tmp_path: Path, make_link: object, message: str
) -> None:
    root = make_tree({"app.py": "", "pkg/__init__.py": ""})
    outside = write_tree(tmp_path / "outside", {"secret.txt": "do not ship\n"})
    make_link(root, outside)  # type: ignore[operator]
    with pytest.raises(BundleError, match=message):
        bundle_spec(root, CopyStyle.all, [], [])


def test_a_loaded_module_reached_through_an_escaping_link_is_an_error(
    make_tree: MakeTree, tmp_path: Path
) -> None:
    root = make_tree({"app.py": ""})
    write_tree(tmp_path / "shared", {"helpers.py": ""})
    (root / "shared").symlink_to(tmp_path / "shared")
    with pytest.raises(BundleError, match=r"symlink shared/helpers\.py points outside root_dir"):
        select_files(root, CopyStyle.loaded_modules, [root / "app.py", root / "shared/helpers.py"], [])


def test_build_refuses_a_file_list_naming_something_outside(make_tree: MakeTree, tmp_path: Path) -> None:
    root = make_tree({"app.py": ""})
    (root / "leak").symlink_to("/etc/hostname")
    for files, message in (
        (["leak"], r"leak points outside root_dir"),
        (["../x"], r"bad bundle path '\.\./x'"),
        (["/etc/hostname"], r"bad bundle path '/etc/hostname'"),
    ):
        with pytest.raises(BundleError, match=message):
            build_bundle(root, files, tmp_path / "out")
    assert not list((tmp_path / "out").iterdir()), "no partial bundle left behind"


def test_sockets_and_pipes_are_skipped_with_a_warning(make_tree: MakeTree) -> None:
    root = make_tree({"app.py": ""})
    os.mkfifo(root / "pipe")
    # AF_UNIX paths are limited to ~107 bytes: bind from inside the directory.
    cwd = os.getcwd()
    os.chdir(root)
    try:
        server = socket.socket(socket.AF_UNIX)
        server.bind("run.sock")
    finally:
        os.chdir(cwd)
    try:
        assert stat.S_ISSOCK(os.lstat(root / "run.sock").st_mode)
        spec = bundle_spec(root, CopyStyle.all, [], [])
    finally:
        server.close()
    assert spec is not None and spec.files == ("app.py",)
    assert sorted(w.split(":")[0] for w in spec.warnings) == ["skipped pipe", "skipped run.sock"]


# --------------------------------------------------------------------------- Flyte's runtime reads our bundle

RUNTIME_SCRIPT = """
import asyncio, sys
from flyte.models import CodeBundle
from flyte._internal.runtime.entrypoints import download_code_bundle, load_task

bundle = CodeBundle(tgz=sys.argv[1], destination=sys.argv[2], computed_version="v1")
bundle = asyncio.run(download_code_bundle(bundle))
resolver = "flyte._internal.resolvers.default.DefaultTaskResolver"
task = load_task(resolver, "mod", "workflows", "instance", "greet")
print(sys.modules["workflows"].__file__)
print(asyncio.run(task.func("world")))
"""


def test_flytes_runtime_extracts_our_bundle_and_imports_the_task(hello_project: Path, tmp_path: Path) -> None:
    """The SDK path `a0` takes (`download_code_bundle` → `tar -x` → resolver import)."""
    files = select_files(hello_project, CopyStyle.all, [], [])
    artifact = build_bundle(hello_project, files, tmp_path / "bundle")
    dest = tmp_path / "work"
    result = subprocess.run(
        [sys.executable, "-c", RUNTIME_SCRIPT, str(artifact.path), str(dest)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    module_file, greeting = result.stdout.strip().splitlines()[-2:]
    assert Path(module_file).resolve() == (dest / "workflows.py").resolve()
    assert greeting == "Hello, WORLD!"


@pytest.mark.stack
def test_the_flyte_base_image_runs_our_bundle(
    hello_project: Path, tmp_path: Path, docker_client: object, flyte_base_image: str
) -> None:
    """Same, inside the stand-in for Flyte's default image (its own Python, flyte and GNU tar)."""
    files = select_files(hello_project, CopyStyle.all, [], [])
    artifact = build_bundle(hello_project, files, tmp_path / "bundle")
    output = docker_client.containers.run(  # type: ignore[attr-defined]
        flyte_base_image,
        command=["python", "-c", RUNTIME_SCRIPT, f"/bundle/{artifact.path.name}", "/tmp/work"],
        volumes={str(artifact.path.parent): {"bind": "/bundle", "mode": "ro"}},
        working_dir="/tmp",
        network_mode="host",
        remove=True,
    )
    assert output.decode().strip().splitlines()[-2:] == ["/tmp/work/workflows.py", "Hello, WORLD!"]


# --------------------------------------------------------------------------- the command


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FLYTE_DEPLOY), "bundle", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_bundle_command_json_reports_the_written_file(hello_project: Path, tmp_path: Path) -> None:
    result = _cli("workflows.py", "analysis", "--json", "-o", f"{tmp_path}/out/", cwd=hello_project)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document.pop("schema_version"), document.pop("kind")) == (1, "bundle")
    assert set(document) == {"digest", "size", "files", "copy_style", "root_dir", "path"}
    assert document["files"] == ["hello_lib/__init__.py", "hello_lib/text.py", "workflows.py"]
    assert document["copy_style"] == "loaded_modules"
    assert document["root_dir"] == str(hello_project.resolve())
    written = Path(document["path"])
    assert written == (tmp_path / "out" / f"{document['digest']}.tar.gz").resolve()
    assert hashlib.sha256(written.read_bytes()).hexdigest() == document["digest"]
    assert written.stat().st_size == document["size"]

    named = _cli("--copy-style", "all", "-o", str(tmp_path / "out" / "code.tgz"), cwd=hello_project)
    assert named.returncode == 0, named.stderr
    assert (tmp_path / "out" / "code.tgz").read_bytes() == written.read_bytes()
    assert written.exists(), "a named output leaves the content-addressed file alone"


def test_bundle_command_errors_are_one_line(hello_project: Path, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    shutil.copytree(hello_project, project)
    (project / "leak.txt").symlink_to("/etc/hostname")
    out = tmp_path / "out"
    cases = [
        (("--copy-style", "all", "-o", f"{out}/"), 1, "error: symlink leak.txt points outside root_dir"),
        (("--copy-style", "none"), 2, "error: --copy-style none: there is no bundle to build"),
        ((), 2, "error: --copy-style loaded_modules needs FILE VAR"),
    ]
    for args, code, start in cases:
        result = _cli(*args, cwd=project)
        assert result.returncode == code, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(start), result.stderr
    assert not out.exists() or not any(out.iterdir())


# ---------------------------------------------------------------------------------------------- golden bytes

GOLDEN_FILES = {
    "workflows.py": b"import flyte\n\nenv = flyte.TaskEnvironment(name='golden')\n",
    "pkg/__init__.py": b"",
    "pkg/util.py": "def shout(text: str) -> str:\n    return text.upper() + ' \u2713'\n".encode(),
    "bin/run.sh": b"#!/bin/sh\nexec python workflows.py\n",
    # Large and varied enough to span several compression blocks.
    "data/table.csv": b"".join(b"%d,%d,%x\n" % (i, i * i, i * 2654435761 % 2**32) for i in range(40_000)),
}
# sha256 of the bundle of GOLDEN_FILES. If this changes, every redeploy of an existing commit would carry a
# different bundle under an existing version (a version conflict): change it only with a new bundle format.
GOLDEN_DIGEST = "8f7f4f999dda0f19a590e9a4c936f0fb08555ecd5eaf7df8d806b659e61099a7"


def test_bundle_bytes_of_a_fixed_tree_never_change(tmp_path: Path) -> None:
    root = tmp_path / "golden"
    for name, data in GOLDEN_FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "bin" / "run.sh").chmod(0o755)
    # Handed over in reverse order: the archive orders its members itself.
    artifact = build_bundle(root, sorted(GOLDEN_FILES, reverse=True), tmp_path / "out")
    assert [m.name for m in _members(artifact.path)] == sorted(GOLDEN_FILES)
    assert artifact.digest == GOLDEN_DIGEST
    assert artifact.size == (tmp_path / "out" / f"{GOLDEN_DIGEST}.tar.gz").stat().st_size
