"""Tasks → TaskSpec through flyte's own serializer, as `flyte deploy` would send them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import flyte
import pytest
from flyte._internal.image_cache import ImageCache
from flyteidl2.task.task_definition_pb2 import TaskSpec

from deployer.controlplane.serialize import task_specs
from deployer.controlplane.specs import spec_digest
from deployer.errors import PlanError
from deployer.sdk import SdkInternalsChanged, sdk_internals_check
from tests.fixtures.controlplane import BASE_IMAGE, CALC_IMAGE, CALC_PROJECT, MakeProject

BUNDLE_URI = "s3://flyte-deploy-test/bundles/sha256-abc.tar.gz"


def specs_of(project_root: Path, env: flyte.TaskEnvironment, **overrides: object) -> list[TaskSpec]:
    args: dict[str, object] = {
        "version": "1.2.3",
        "project": "acme",
        "domain": "staging",
        "org": "",
        "root_dir": project_root,
        "image_uri": CALC_IMAGE,
        "bundle_uri": BUNDLE_URI,
        "bundle_digest": "sha256:abc",
        "image_lookup": {"cp_base": BASE_IMAGE},
    }
    args.update(overrides)
    return task_specs(env, **args)  # type: ignore[arg-type]


def arg_after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_pinned_sdk_internals_are_present() -> None:
    """Fails, naming what moved, when a flyte release changes the internals we serialize with."""
    assert flyte.__version__.startswith("2.12."), flyte.__version__
    sdk_internals_check.cache_clear()
    sdk_internals_check()


def test_internals_check_names_the_missing_api(monkeypatch: pytest.MonkeyPatch) -> None:
    import flyte._deploy

    monkeypatch.delattr(flyte._deploy, "_get_documentation_entity")
    sdk_internals_check.cache_clear()
    try:
        with pytest.raises(SdkInternalsChanged) as err:
            sdk_internals_check()
    finally:
        sdk_internals_check.cache_clear()
    message = str(err.value)
    assert "flyte._deploy._get_documentation_entity is missing" in message
    assert "\n" not in message and "flyte>=2.12.1,<2.13" in message


def test_bundle_mode_spec_is_what_flyte_deploy_sends(flyte_project: MakeProject) -> None:
    project = flyte_project({"app.py": CALC_PROJECT})
    add, total = specs_of(project.root, project.module.calc)

    assert [add.short_name, total.short_name] == ["add", "total"]
    template = add.task_template
    assert (template.id.project, template.id.domain, template.id.name, template.id.version) == (
        "acme",
        "staging",
        "cp_calc.add",
        "1.2.3",
    )
    assert template.container.image == CALC_IMAGE
    args = list(template.container.args)
    assert args[0] == "a0"
    assert arg_after(args, "--version") == "1.2.3"
    assert arg_after(args, "--tgz") == BUNDLE_URI
    assert arg_after(args, "--dest") == "."
    assert args[-5:] == [
        "flyte._internal.resolvers.default.DefaultTaskResolver",
        "mod",
        "app",
        "instance",
        "add",
    ]
    # The runtime resolves images of called environments from this cache: both envs are in it.
    cache = ImageCache.from_transport(arg_after(args, "--image-cache"))
    assert cache.image_lookup == {"cp_base": BASE_IMAGE, "cp_calc": CALC_IMAGE}
    assert template.metadata.code_bundle_uri == BUNDLE_URI

    assert (add.environment.name, add.environment.description) == ("cp_calc", "Adds numbers")
    assert [p.name for p in add.default_inputs] == ["y"]
    assert add.default_inputs[0].parameter.default.scalar.primitive.integer == 2
    assert add.documentation.short_description == "Add two numbers."
    inputs = {v.key: v.value for v in template.interface.inputs.variables}
    assert inputs["x"].description == "the first number"
    env = {kv.key: kv.value for kv in template.container.env}
    assert env == {"GREETING": "hi", "_F_SYS_PATH": "./."}


def test_container_mode_spec_has_no_bundle(flyte_project: MakeProject) -> None:
    project = flyte_project({"app.py": CALC_PROJECT})
    (double,) = specs_of(
        project.root, project.module.base, image_uri=BASE_IMAGE, bundle_uri=None, bundle_digest=None
    )
    args = list(double.task_template.container.args)
    assert "--tgz" not in args and "--dest" not in args
    assert not double.task_template.metadata.code_bundle_uri
    assert args[-4:] == ["mod", "app", "instance", "double"]
    assert double.task_template.container.image == BASE_IMAGE


def test_import_roots_are_recorded_relative_to_root_and_deduplicated(flyte_project: MakeProject) -> None:
    project = flyte_project({"app.py": CALC_PROJECT})
    src = project.root / "src"
    (spec, _) = specs_of(
        project.root, project.module.calc, sys_paths=[src, project.root, src, Path("/usr/lib")]
    )
    env = {kv.key: kv.value for kv in spec.task_template.container.env}
    assert env["_F_SYS_PATH"] == "./src:./."


def test_same_task_serializes_to_the_same_bytes_in_another_process(flyte_project: MakeProject) -> None:
    """Idempotent redeploys compare spec bytes: they must not depend on the deploying process."""
    project = flyte_project({"app.py": CALC_PROJECT})
    here = [spec_digest(s) for s in specs_of(project.root, project.module.calc)]
    script = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        sys.path.insert(0, {str(project.root)!r})
        import app
        from deployer.controlplane.serialize import task_specs
        from deployer.controlplane.specs import spec_digest
        specs = task_specs(app.calc, version="1.2.3", project="acme", domain="staging", org="",
                           root_dir=Path({str(project.root)!r}), image_uri={CALC_IMAGE!r},
                           bundle_uri={BUNDLE_URI!r}, bundle_digest="sha256:abc",
                           image_lookup={{"cp_base": {BASE_IMAGE!r}}})
        print(json.dumps([spec_digest(s) for s in specs]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=project.root,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == here


def test_a_task_that_cannot_be_serialized_is_one_clear_error(flyte_project: MakeProject) -> None:
    project = flyte_project(
        {
            "app.py": """
            import flyte

            env = flyte.TaskEnvironment(name="cp_broken", image=flyte.Image.from_ref_name("x"))


            @env.task
            async def bad(x: int = "nope") -> int:
                return x
            """
        }
    )
    with pytest.raises(PlanError) as err:
        specs_of(project.root, project.module.env)
    message = str(err.value)
    assert message.startswith("cannot serialize task cp_broken.bad of environment cp_broken:")
    assert "'x'" in message and "\n" not in message
    assert err.value.file == str(project.root / "app.py")
