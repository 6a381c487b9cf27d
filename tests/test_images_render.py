"""Rendering `flyte.Image` specs into Dockerfiles + build contexts (no engine needed)."""

from __future__ import annotations

import io
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import flyte
import pytest
from flyte._image import CodeBundleLayer, CopyConfig, Layer

from deployer.errors import BuildError, UsageError
from deployer.images import layers as layer_kinds
from deployer.images.render import CodeFiles, render_image
from deployer.images.tags import apply_mirrors, parse_mirrors, repository, sanitize_tag

BASE = "ghcr.io/flyteorg/flyte:py3.11-v2.12.1"


def base_image() -> flyte.Image:
    return flyte.Image.from_debian_base(python_version=(3, 11))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "mod.py").write_text("VALUE = 1\n")
    (root / "pkg" / "notes.tmp").write_text("scratch\n")
    (root / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    (root / "tool.py").write_text("print('tool')\n")
    (root / "requirements.txt").write_text("idna==3.7\n")
    (root / "wheels").mkdir()
    (root / "wheels" / "demo-1.0-py3-none-any.whl").write_bytes(b"PK")
    (root / "uvproj").mkdir()
    (root / "uvproj" / "pyproject.toml").write_text('[project]\nname = "uvproj"\nversion = "0.1"\n')
    (root / "uvproj" / "uv.lock").write_text("version = 1\n")
    (root / "uvproj" / "src.py").write_text("X = 1\n")
    (root / "poetryproj").mkdir()
    (root / "poetryproj" / "pyproject.toml").write_text('[tool.poetry]\nname = "p"\n')
    (root / "poetryproj" / "poetry.lock").write_text("# lock\n")
    (root / "pixiproj").mkdir()
    (root / "pixiproj" / "pixi.toml").write_text('[workspace]\nname = "x"\nchannels = []\nplatforms = []\n')
    return root


def render(image: flyte.Image | None, root: Path, **kwargs: object) -> tuple[str, dict[str, bytes]]:
    kwargs.setdefault("base", image.base_image if image is not None else BASE)
    rendered = render_image(image, root_dir=root, **kwargs)  # type: ignore[arg-type]
    return rendered.dockerfile, {e.path: e.data for e in rendered.context.entries()}


def instructions(dockerfile: str) -> list[str]:
    """Dockerfile instructions with continuation lines joined."""
    joined = dockerfile.replace("\\\n", " ")
    return [
        " ".join(line.split()) for line in joined.splitlines() if line.strip() and not line.startswith("#")
    ]


# ---------------------------------------------------------------------------------------------- layers


def test_apt_and_pip_layers_render_with_index_options(project: Path) -> None:
    image = (
        base_image()
        .with_apt_packages("curl", "git")
        .with_pip_packages(
            "requests>=2",
            "numpy<2",
            index_url="https://pypi.example/simple",
            extra_index_urls=["https://a.example/simple", "https://b.example/simple"],
            pre=True,
            extra_args="--no-deps",
        )
    )
    lines = instructions(render(image, project)[0])
    assert lines[0] == f"FROM {BASE}"
    assert lines[1] == "USER root"
    apt = next(line for line in lines if "apt-get install" in line)
    assert "apt-get update" in apt and "--no-install-recommends curl git" in apt
    pip = next(line for line in lines if "-m pip install" in line)
    assert pip.endswith(
        "pip install --index-url https://pypi.example/simple --extra-index-url https://a.example/simple "
        "--extra-index-url https://b.example/simple --pre --no-deps 'requests>=2' 'numpy<2'"
    )
    # The virtualenv bootstrap comes once, before the first Python layer.
    assert lines.index(
        'RUN test -x "$VIRTUAL_ENV/bin/python" || python3 -m venv "$VIRTUAL_ENV"'
    ) < lines.index(pip)


def test_requirements_file_is_copied_then_installed(project: Path) -> None:
    dockerfile, files = render(base_image().with_requirements(project / "requirements.txt"), project)
    lines = instructions(dockerfile)
    copy = next(line for line in lines if line.startswith("COPY") and "requirements" in line)
    assert (
        copy
        == 'COPY ["layers/01-requirements/requirements.txt", "/opt/flyte-deploy/layers/01/requirements.txt"]'
    )
    assert lines[lines.index(copy) + 1].endswith("--requirement /opt/flyte-deploy/layers/01/requirements.txt")
    assert files["layers/01-requirements/requirements.txt"] == b"idna==3.7\n"


def test_wheels_install_dependencies_then_force_the_local_wheel(project: Path) -> None:
    from flyte._image import PythonWheels

    image = base_image().clone(addl_layer=PythonWheels(wheel_dir=project / "wheels", package_name="demo"))
    dockerfile, files = render(image, project)
    lines = instructions(dockerfile)
    assert 'COPY ["layers/01-wheels/", "/opt/flyte-deploy/layers/01/wheels/"]' in lines
    run = next(line for line in lines if "--force-reinstall" in line)
    assert "--find-links /opt/flyte-deploy/layers/01/wheels demo &&" in run
    assert run.endswith("--no-deps --no-index --force-reinstall demo")
    assert "layers/01-wheels/demo-1.0-py3-none-any.whl" in files


def test_uv_project_dependencies_only_and_install_project(project: Path) -> None:
    deps = base_image().with_uv_project(project / "uvproj" / "pyproject.toml", extra_args="--frozen")
    lines = instructions(render(deps, project)[0])
    assert any(line.startswith("RUN command -v uv") and "uv==" in line for line in lines)
    assert 'COPY ["layers/01-uv/uv.lock", "/opt/flyte-deploy/layers/01/project/uv.lock"]' in lines
    assert lines[-1] == (
        "RUN cd /opt/flyte-deploy/layers/01/project && "
        "UV_SYSTEM_CERTS=true uv sync --active --inexact --no-install-project --frozen"
    )
    whole = base_image().with_uv_project(
        project / "uvproj" / "pyproject.toml", project_install_mode="install_project"
    )
    dockerfile, files = render(whole, project)
    assert instructions(dockerfile)[-1] == (
        "RUN UV_SYSTEM_CERTS=true uv sync --active --inexact --no-editable "
        "--project /opt/flyte-deploy/layers/01/project"
    )
    assert {"layers/01-uv/src.py", "layers/01-uv/pyproject.toml", "layers/01-uv/uv.lock"} <= set(files)


def test_poetry_project_installs_into_the_image_venv(project: Path) -> None:
    image = base_image().with_poetry_project(project / "poetryproj" / "pyproject.toml")
    lines = instructions(render(image, project)[0])
    assert any("pip install" in line and "poetry>=2,<3" in line for line in lines)
    assert 'COPY ["layers/01-poetry/poetry.lock", "/opt/flyte-deploy/layers/01/project/poetry.lock"]' in lines
    assert (
        lines[-1] == "RUN cd /opt/flyte-deploy/layers/01/project && poetry install --no-interaction --no-root"
    )


def test_pixi_project_copies_pixi_from_the_mirrored_image(project: Path) -> None:
    image = base_image().with_pixi_project(project / "pixiproj" / "pixi.toml")
    mirrors = parse_mirrors(["ghcr.io=mirror.local:5000"])
    lines = instructions(render(image, project, mirrors=mirrors)[0])
    assert any(line.startswith("COPY --from=mirror.local:5000/prefix-dev/pixi:") for line in lines)
    assert "RUN pixi install --manifest-path /opt/pixi-project/pixi.toml --environment default" in lines
    assert any(line.startswith("ENV VIRTUAL_ENV=/opt/pixi-project/.pixi/envs/default") for line in lines)


def test_uv_script_installs_its_inline_dependencies(project: Path) -> None:
    script = project / "job.py"
    script.write_text('# /// script\n# dependencies = ["httpx==0.28.1"]\n# ///\nprint(1)\n')
    image = base_image().clone(addl_layer=flyte._image.UVScript(script=script))
    lines = instructions(render(image, project)[0])
    assert lines[-1].endswith("-m pip install httpx==0.28.1")


def test_commands_env_workdir_and_raw_lines(project: Path) -> None:
    from flyte._image import _DockerLines

    image = (
        base_image()
        .with_env_vars({"GREETING": "hello world", "PATH": "/extra:$PATH", "QUOTE": 'say "hi"'})
        .with_workdir("/app")
        .with_commands(["echo one", "echo two\necho three"])
        .clone(addl_layer=_DockerLines(("LABEL team=ml",)))
    )
    lines = instructions(render(image, project)[0])
    assert lines[2:] == [
        'ENV GREETING="hello world"',
        'ENV PATH="/extra:$PATH"',
        'ENV QUOTE="say \\"hi\\""',
        "WORKDIR /app",
        "RUN echo one",
        'RUN ["/bin/sh", "-c", "echo two\\necho three"]',
        "LABEL team=ml",
    ]


def test_source_file_and_folder_path_semantics(project: Path) -> None:
    image = (
        base_image()
        .with_source_folder(project / "pkg")
        .with_source_folder(project / "pkg", "/srv/contents", copy_contents_only=True)
        .with_source_file(project / "tool.py")
        .with_source_file(project / "tool.py", "/opt/bin")
    )
    dockerfile, files = render(image, project)
    assert instructions(dockerfile)[2:] == [
        'COPY ["layers/01-src/pkg/", "./pkg"]',  # the folder itself, under the workdir
        'COPY ["layers/02-src/pkg/", "/srv/contents"]',  # only its contents
        'COPY ["layers/03-src/tool.py", "./"]',
        'COPY ["layers/04-src/tool.py", "/opt/bin/"]',  # dst is a folder, never a file named /opt/bin
    ]
    # Standard ignores apply to copied folders: no bytecode caches in images.
    assert "layers/01-src/pkg/mod.py" in files
    assert not any("__pycache__" in path for path in files)


def test_dockerignore_filters_copied_folders(project: Path) -> None:
    ignore = project / "custom.dockerignore"
    ignore.write_text("*.tmp\n")
    image = base_image().with_dockerignore(ignore).with_source_folder(project / "pkg")
    _, files = render(image, project)
    assert "layers/01-src/pkg/mod.py" in files
    assert "layers/01-src/pkg/notes.tmp" not in files
    missing = base_image().with_dockerignore(project / "nope.dockerignore")
    with pytest.raises(BuildError, match=r"with_dockerignore\(\): .*nope.dockerignore does not exist"):
        render(missing, project)


def test_layers_are_ordered_system_then_python_then_code(project: Path) -> None:
    image = (
        base_image()
        .with_source_folder(project / "pkg")
        .with_pip_packages("six")
        .with_apt_packages("curl")
        .with_env_vars({"A": "1"})  # a barrier: nothing moves across it
        .with_source_file(project / "tool.py")
        .with_pip_packages("idna")
    )
    lines = [
        line for line in instructions(render(image, project)[0]) if line.startswith(("COPY", "ENV A", "RUN"))
    ]
    kinds = [
        "apt"
        if "apt-get" in line
        else "pip"
        if "pip install" in line
        else "env"
        if line.startswith("ENV")
        else "copy"
        if line.startswith("COPY")
        else "venv"
        for line in lines
    ]
    assert kinds == ["apt", "venv", "pip", "copy", "env", "pip", "copy"]


def test_pip_install_from_a_local_path_is_not_moved_before_copies(project: Path) -> None:
    image = base_image().with_source_folder(project / "pkg", "/src/pkg").with_pip_packages("/src/pkg")
    ordered = layer_kinds.ordered(image._layers)
    assert [type(layer).__name__ for layer in ordered] == ["CopyConfig", "PipPackages"]


def test_code_layer_is_last_and_laid_out_from_root_dir(project: Path) -> None:
    image = base_image().with_pip_packages("six").with_source_file(project / "tool.py")
    code = CodeFiles(project, ("pkg/__init__.py", "pkg/mod.py", "tool.py"))
    dockerfile, files = render(image, project, code=code)
    assert instructions(dockerfile)[-1] == 'COPY ["code/", "./"]'
    assert files["code/pkg/mod.py"] == b"VALUE = 1\n"
    assert {p for p in files if p.startswith("code/")} == {
        "code/pkg/__init__.py",
        "code/pkg/mod.py",
        "code/tool.py",
    }


def test_code_bundle_layer_bakes_code_only_without_a_bundle(project: Path) -> None:
    image = base_image().with_code_bundle(copy_style="all")
    selected: list[str] = []

    def select(copy_style: str) -> tuple[str, ...]:
        selected.append(copy_style)
        return ("tool.py",)

    with_bundle, _ = render(image, project, copy_style="loaded_modules", select_code=select)
    assert "COPY" not in with_bundle and not selected
    without_bundle, files = render(image, project, copy_style="none", select_code=select)
    assert instructions(without_bundle)[-1] == 'COPY ["layers/01-code/", "./"]'
    assert selected == ["all"] and "layers/01-code/tool.py" in files
    assert isinstance(image._layers[-1], CodeBundleLayer)


def test_image_from_dockerfile_is_mirrored_and_gets_the_code(project: Path) -> None:
    (project / "docker").mkdir()
    (project / "docker" / "Dockerfile").write_text(
        "FROM --platform=linux/amd64 ghcr.io/flyteorg/flyte:py3.11-v2.12.1 AS base\nCOPY app.txt /app.txt\n"
    )
    (project / "docker" / "app.txt").write_text("app\n")
    image = flyte.Image.from_dockerfile(
        project / "docker" / "Dockerfile", registry="r.example", name="custom"
    )
    mirrors = parse_mirrors(["ghcr.io/flyteorg/flyte=127.0.0.1:5000/flyteorg/flyte"])
    dockerfile, files = render(
        image, project, base=None, mirrors=mirrors, code=CodeFiles(project, ("tool.py",))
    )
    lines = instructions(dockerfile)
    assert lines[0] == "FROM --platform=linux/amd64 127.0.0.1:5000/flyteorg/flyte:py3.11-v2.12.1 AS base"
    assert lines[-1] == 'COPY [".flyte-deploy/code/", "./"]'
    assert files["app.txt"] == b"app\n" and ".flyte-deploy/code/tool.py" in files


def test_base_image_mirror_rewrites_from(project: Path) -> None:
    mirrors = parse_mirrors(["ghcr.io/flyteorg/flyte=127.0.0.1:5000/flyteorg/flyte"])
    dockerfile, _ = render(base_image().with_env_vars({"A": "1"}), project, mirrors=mirrors)
    assert instructions(dockerfile)[0] == "FROM 127.0.0.1:5000/flyteorg/flyte:py3.11-v2.12.1"


# ---------------------------------------------------------------------------------------------- errors


@dataclass(frozen=True, kw_only=True)
class FancyLayer(Layer):
    def update_hash(self, hasher: object, ignore: object = None) -> None:
        pass


def test_unknown_layer_type_is_an_error_naming_it(project: Path) -> None:
    image = base_image().with_env_vars({"A": "1"}).clone(addl_layer=FancyLayer())
    with pytest.raises(BuildError, match=r"layer type .*FancyLayer is not supported"):
        render(image, project)


def test_secret_mounts_are_refused_naming_the_layer(project: Path) -> None:
    image = base_image().with_pip_packages("private", secret_mounts=["GITHUB_PAT"])
    with pytest.raises(BuildError, match=r"PipPackages layer uses secret_mounts, which need BuildKit"):
        render(image, project)


def test_missing_source_paths_name_the_path(project: Path) -> None:
    image = base_image().clone(addl_layer=CopyConfig(path_type=0, src=project / "gone.py", dst="."))
    with pytest.raises(BuildError, match=r"source file .*gone.py does not exist"):
        render(image, project)


# ---------------------------------------------------------------------------------------------- identity


def test_identity_is_a_pure_function_of_the_inputs(project: Path, tmp_path: Path) -> None:
    def identity(root: Path) -> str:
        image = base_image().with_source_folder(root / "pkg").with_requirements(root / "requirements.txt")
        return render_image(image, base=BASE, root_dir=root, code=CodeFiles(root, ("tool.py",))).identity

    first = identity(project)
    assert first.startswith("build-") and identity(project) == first
    # The same content somewhere else on disk (another CI checkout) is the same image.
    elsewhere = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(project, elsewhere)
    assert identity(elsewhere) == first
    (elsewhere / "tool.py").write_text("print('changed')\n")
    assert identity(elsewhere) != first


def test_context_tarball_has_fixed_metadata(project: Path) -> None:
    rendered = render_image(
        base_image().with_source_folder(project / "pkg"),
        base=BASE,
        root_dir=project,
        code=CodeFiles(project, ("tool.py",)),
    )
    with tarfile.open(fileobj=io.BytesIO(rendered.context.tar_bytes())) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members if m.isdir()) + sorted(
        m.name for m in members if m.isfile()
    )
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert rendered.context.tar_bytes() == rendered.context.tar_bytes()


# ---------------------------------------------------------------------------------------------- tags


def test_tags_and_repositories_are_sanitised() -> None:
    assert sanitize_tag("feature/Foo bar") == "feature-Foo-bar"
    assert sanitize_tag(".hidden") == "hidden"
    assert len(sanitize_tag("x" * 300)) == 128
    assert repository("GHCR.io/Acme", "My_Env") == "ghcr.io/acme/my_env"
    with pytest.raises(UsageError, match="no usable characters"):
        sanitize_tag("///")


def test_mirror_matching_respects_reference_boundaries() -> None:
    mirrors = parse_mirrors(
        ["ghcr.io/flyteorg/flyte=m:5000/flyte", "docker.io/library=m:5000/hub", "ghcr.io=m:5000/gh"]
    )
    assert apply_mirrors("ghcr.io/flyteorg/flyte:py3.11", mirrors) == "m:5000/flyte:py3.11"
    assert apply_mirrors("ghcr.io/flyteorg/flyte-other:1", mirrors) == "m:5000/gh/flyteorg/flyte-other:1"
    assert apply_mirrors("python:3.11-slim", mirrors) == "m:5000/hub/python:3.11-slim"
    assert apply_mirrors("quay.io/x/y:1", mirrors) == "quay.io/x/y:1"
    with pytest.raises(UsageError, match=r"--base-image-mirror 'nope': expected FROM=TO"):
        parse_mirrors(["nope"])
