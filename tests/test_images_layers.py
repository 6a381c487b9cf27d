"""The layer registry, and what an image layer may read and write (no engine needed)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flyte
import flyte._image
import pytest
from flyte._image import Layer

from deployer.errors import BuildError
from deployer.images import layers
from deployer.images.render import render_image
from deployer.images.sources import SourcePolicy
from tests.fixtures.pipeline import CliResult

BASE = "ghcr.io/flyteorg/flyte:py3.11-v2.12.1"


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_layer_type_of_the_sdk_has_a_renderer_and_a_kind() -> None:
    import flyte.app  # noqa: F401  (registers what it defines, like any user import would)

    defined = {cls for cls in _subclasses(Layer) if cls.__module__.startswith("flyte")}
    assert defined, "the SDK defines no Layer subclass: its layer model changed"
    missing = sorted(f"{cls.__module__}.{cls.__qualname__}" for cls in defined - set(layers.LAYER_TYPES))
    assert missing == []
    for cls, registered in layers.LAYER_TYPES.items():
        assert isinstance(registered.kind, layers.Kind) and callable(registered.render), cls


def test_the_table_decides_kind_and_renderer(tmp_path: Path) -> None:
    image = (
        flyte.Image.from_debian_base(python_version=(3, 11)).with_apt_packages("jq").with_env_vars({"A": "1"})
    )
    kinds = [layers.kind_of(layer) for layer in image._layers]
    assert kinds == [layers.Kind.system, layers.Kind.barrier]
    rendered = render_image(image, base=BASE, root_dir=tmp_path)
    assert "apt-get install" in (rendered.dockerfile or "") and 'ENV A="1"' in (rendered.dockerfile or "")
    # BuildKit's dialect keeps apt's caches in cache mounts, out of the layer.
    assert "--mount=type=cache,target=/var/cache/apt" in rendered.buildkit_dockerfile


# ---------------------------------------------------------------------------------------------- containment


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("X = 1\n")
    return root


def base() -> flyte.Image:
    return flyte.Image.from_debian_base(python_version=(3, 11))


def test_a_source_file_outside_root_dir_is_refused_naming_it(project: Path, tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "cred.txt"
    secret.parent.mkdir()
    secret.write_text("token\n")
    image = base().with_source_file(secret)
    with pytest.raises(BuildError, match=rf"source file {secret} is outside root_dir {project}"):
        render_image(image, base=BASE, root_dir=project, name="svc")
    allowed = render_image(
        image, base=BASE, root_dir=project, policy=SourcePolicy(project, allow_outside=True)
    )
    assert any(entry.path.endswith("cred.txt") for entry in allowed.context.entries())


def test_a_symlink_out_of_a_copied_folder_is_refused(project: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere.txt").write_text("not yours\n")
    (project / "pkg" / "link.txt").symlink_to(tmp_path / "elsewhere.txt")
    with pytest.raises(BuildError, match=r"pkg/link.txt \(→ .*elsewhere.txt\) is outside root_dir"):
        render_image(base().with_source_folder(project / "pkg"), base=BASE, root_dir=project)


def test_the_filesystem_root_is_refused_at_once_even_when_outside_paths_are_allowed(project: Path) -> None:
    image = base().with_source_folder(Path("/"))
    started = time.monotonic()
    policy = SourcePolicy(project, allow_outside=True)
    with pytest.raises(BuildError, match=r"source folder / is the filesystem root"):
        render_image(image, base=BASE, root_dir=project, policy=policy)
    with pytest.raises(BuildError, match=r"under /proc \(a virtual filesystem\)"):
        render_image(
            base().with_source_folder(Path("/proc/self")), base=BASE, root_dir=project, policy=policy
        )
    assert time.monotonic() - started < 30  # refused before any walk, not after reading /proc


def test_a_destination_climbing_out_of_the_workdir_is_refused(project: Path) -> None:
    image = base().with_source_file(project / "pkg" / "mod.py", "../../etc")
    with pytest.raises(BuildError, match=r"destination '\.\./\.\./etc' climbs out of the working directory"):
        render_image(image, base=BASE, root_dir=project)
    inside = base().with_source_file(project / "pkg" / "mod.py", "/etc/svc")
    assert 'COPY ["layers/01-src/mod.py", "/etc/svc/"]' in (
        render_image(inside, base=BASE, root_dir=project).dockerfile or ""
    )


IMAGE = "flyte.Image.from_debian_base(python_version=(3, 11))"
BAD_SOURCES = {
    "outside": IMAGE + '.with_source_file(Path("{outside}"))',
    "dst": IMAGE + '.with_source_file(Path("data.txt"), "../../etc")',
    "root": IMAGE + '.with_source_folder(Path("/"))',
}
PROGRAM = """\
from pathlib import Path

import flyte

env = flyte.TaskEnvironment(name="svc", image={image})


@env.task
async def hello() -> str:
    return "hi"
"""


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("outside", "source file {outside} is outside root_dir"),
        ("dst", "destination '../../etc' climbs out of the working directory"),
        ("root", "/ is the filesystem root: it cannot go into an image"),
    ],
)
def test_each_bad_layer_input_is_one_error_line(
    case: str,
    message: str,
    make_git_repo: Callable[..., Any],
    flyte_deploy: Callable[..., CliResult],
    tmp_path: Path,
) -> None:
    outside = tmp_path / "cred.txt"
    outside.write_text("secret\n")
    program = PROGRAM.format(image=BAD_SOURCES[case].format(outside=outside))
    repo = make_git_repo(files={"workflows.py": program, "data.txt": "d\n"})
    args = ("build", "workflows.py", "env", "--mode", "container", "--dry-run")
    result = flyte_deploy(*args, cwd=repo.path, timeout=120, env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert result.code != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert message.format(outside=outside) in errors[0]
    if case == "outside":
        assert "FLYTE_DEPLOY_ALLOW_OUTSIDE_SOURCES=true" in errors[0]
        allowed = flyte_deploy(
            *args,
            "--json",
            cwd=repo.path,
            env={"DOCKER_HOST": "unix:///nonexistent.sock", "FLYTE_DEPLOY_ALLOW_OUTSIDE_SOURCES": "true"},
        )
        assert allowed.code == 0, allowed.stderr
