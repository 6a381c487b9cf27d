"""The action's contract: action.yml ↔ inputs, triggers → decisions, and the runner's file/workflow
commands. No Docker needed; the full runs are in test_github.py (in-process) and test_action_e2e.py."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployer.errors import UsageError
from deployer.models import CopyStyle, Mode
from deployer.report.models import RunKind
from entrypoint.action import main
from entrypoint.events import decide
from entrypoint.github_env import GitHubEnv
from entrypoint.inputs import input_default, input_names, read_inputs, to_request, unknown_inputs
from tests.fixtures.github import read_outputs

REPO_ROOT = Path(__file__).resolve().parent.parent
ACTION = yaml.safe_load((REPO_ROOT / "action.yml").read_text())
SHA = "a" * 40
HEAD = "b" * 40


def pr_event(
    action: str = "opened", *, number: int = 7, head_repo: str | None = "acme/app"
) -> dict[str, Any]:
    return {
        "action": action,
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"sha": HEAD, "ref": "feature", "repo": {"full_name": head_repo} if head_repo else None},
            "base": {"ref": "main", "repo": {"full_name": "acme/app"}},
        },
        "repository": {"full_name": "acme/app", "default_branch": "main"},
    }


# ---------------------------------------------------------------------------------------------- action.yml


def test_action_yml_is_a_docker_action_built_from_the_dockerfile() -> None:
    assert ACTION["runs"] == {"using": "docker", "image": "Dockerfile"}
    assert (REPO_ROOT / "Dockerfile").is_file()


def test_every_input_in_action_yml_is_read_with_the_same_default() -> None:
    declared = ACTION["inputs"]
    fields = set(input_names())
    assert set(declared) == fields, "action.yml inputs and the inputs the action reads differ"
    for name, spec in declared.items():
        assert spec.get("description"), f"input {name} has no description"
        default = spec.get("default", "")
        if name == "github-token":
            assert default == "${{ github.token }}"
            continue
        parsed = read_inputs({f"INPUT_{name.upper()}": str(default)} if default != "" else {})
        assert parsed.value(name) == input_default(name), name


def test_action_yml_documents_every_output() -> None:
    outputs = ACTION["outputs"]
    expected = {
        "trigger",
        "version",
        "images",
        "image-args",
        "bundle-uri",
        "environments",
        "deployed",
        "preview-url",
    }
    assert set(outputs) == expected
    assert all(spec.get("description") for spec in outputs.values())


# ---------------------------------------------------------------------------------------------- inputs


def test_inputs_keep_hyphens_and_parse_booleans_lists_and_choices() -> None:
    inputs = read_inputs(
        {
            "INPUT_PATH": " workflows.py ",
            "INPUT_ALL": "True",
            "INPUT_ROOT-DIR": "src",
            "INPUT_COPY-STYLE": "ALL",
            "INPUT_MODE": "bundle",
            "INPUT_IMAGES": (
                "base=ghcr.io/acme/base:1\n# a comment\n\ngpu=ghcr.io/acme/gpu:2, ghcr.io/acme/default:3\n"
            ),
            "INPUT_BASE-IMAGE-MIRROR": "ghcr.io/flyteorg=mirror.local/flyteorg",
            "INPUT_DRY-RUN": "yes",
            "INPUT_COMMENT": "off",
            "INPUT_API-KEY": "s3cret",
        }
    )
    assert inputs.path == "workflows.py"
    assert inputs.all is True
    assert inputs.root_dir == "src"
    assert inputs.value("copy-style") is CopyStyle.all
    assert inputs.value("mode") is Mode.bundle
    assert inputs.value("images") == (
        "base=ghcr.io/acme/base:1",
        "gpu=ghcr.io/acme/gpu:2",
        "ghcr.io/acme/default:3",
    )
    assert inputs.value("base-image-mirror") == ("ghcr.io/flyteorg=mirror.local/flyteorg",)
    assert inputs.value("dry-run") is True and inputs.comment is False
    assert inputs.secrets == ("s3cret",)
    assert "s3cret" not in repr(inputs)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"INPUT_ALL": "maybe"}, "input `all`: 'maybe' is not a boolean"),
        ({"INPUT_COPY-STYLE": "everything"}, "input `copy-style`: 'everything' is not valid (use one of:"),
        ({"INPUT_MODE": "kubernetes"}, "input `mode`: 'kubernetes' is not valid"),
        ({"INPUT_PUSH": "true"}, "input `push`: 'true' is not valid (use one of: auto, false)"),
        ({"INPUT_PREVIEW-DOMAIN": "dev", "INPUT_PREVIEW-VERSION-PREFIX": "preview-"}, "must contain {pr}"),
        ({"INPUT_PREVIEW-URL": "https://x/{branch}"}, "input `preview-url`: unknown placeholder {branch}"),
        ({"INPUT_REGISTRY-USERNAME": "bot"}, "input `registry-password` is required"),
        ({"INPUT_ENV-VAR": "prep", "INPUT_ALL": "true"}, "`env-var` and `all` exclude each other"),
    ],
)
def test_bad_inputs_name_the_input(env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as err:
        read_inputs(env)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_inputs_are_reported() -> None:
    assert unknown_inputs({"INPUT_PATH": "x", "INPUT_REGISTRY-USER": "me", "HOME": "/"}) == ["registry-user"]


def _decision(event: str, payload: dict[str, Any], **env: str) -> Any:
    return decide(event, payload, {"GITHUB_REPOSITORY": "acme/app", **env})


def test_request_targets_follow_the_trigger(tmp_path: Path) -> None:
    (tmp_path / "workflows.py").write_text("")
    inputs = read_inputs(
        {
            "INPUT_PATH": "workflows.py",
            "INPUT_ALL": "true",
            "INPUT_API-KEY": "k",
            "INPUT_PREVIEW-DOMAIN": "pr-{pr}",
        }
    )
    preview = to_request(inputs, _decision("pull_request", pr_event()), tmp_path, version="pr-7-x")
    release = to_request(inputs, _decision("push", {}, GITHUB_REF="refs/tags/v1.2.0"), tmp_path)
    main_push = to_request(
        inputs,
        _decision("push", {"repository": {"default_branch": "main"}}, GITHUB_REF="refs/heads/main"),
        tmp_path,
    )
    fork = to_request(inputs, _decision("pull_request", pr_event(head_repo="evil/app")), tmp_path)
    assert (preview.settings.domain, preview.settings.version, preview.settings.push) == (
        "pr-7",
        "pr-7-x",
        True,
    )
    assert (release.settings.domain, main_push.settings.domain) == ("production", "staging")
    assert preview.selection.path == (tmp_path / "workflows.py").resolve() and preview.selection.all_envs
    assert preview.settings.api_key is not None and preview.settings.api_key.get_secret_value() == "k"
    # A fork's run builds only and never carries a secret, even one that is configured.
    assert (fork.settings.push, fork.settings.api_key) == (False, None)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "input `path` is required"),
        ({"INPUT_PATH": "missing.py", "INPUT_ALL": "true"}, "input `path`: 'missing.py' does not exist"),
        ({"INPUT_PATH": "../outside.py", "INPUT_ALL": "true"}, "points outside the workspace"),
        ({"INPUT_PATH": "workflows.py"}, "is a file: set `env-var` or `all: true`"),
        ({"INPUT_PATH": "."}, "is a directory: set `recursive: true`"),
        (
            {"INPUT_PATH": "workflows.py", "INPUT_ALL": "true", "INPUT_ROOT-DIR": "nope"},
            "input `root-dir`: 'nope' does not exist",
        ),
    ],
)
def test_bad_paths_name_the_input(tmp_path: Path, inputs: dict[str, str], message: str) -> None:
    (tmp_path / "workflows.py").write_text("")
    with pytest.raises(UsageError) as err:
        to_request(read_inputs(inputs), _decision("push", {}, GITHUB_REF="refs/heads/main"), tmp_path)
    assert message in str(err.value)


# ---------------------------------------------------------------------------------------------- triggers


@pytest.mark.parametrize(
    ("event", "payload", "env", "kind", "note"),
    [
        ("pull_request", pr_event("opened"), {}, RunKind.preview, None),
        ("pull_request", pr_event("synchronize"), {}, RunKind.preview, None),
        ("pull_request", pr_event("reopened"), {}, RunKind.preview, None),
        ("pull_request", pr_event("closed"), {}, RunKind.cleanup, None),
        ("pull_request", pr_event("labeled"), {}, RunKind.skipped, "action `labeled`"),
        ("pull_request", pr_event(head_repo="evil/app"), {}, RunKind.build_only, "fork `evil/app`"),
        ("pull_request", pr_event(head_repo=None), {}, RunKind.build_only, "deleted repository"),
        (
            "pull_request",
            pr_event("closed", head_repo="evil/app"),
            {},
            RunKind.skipped,
            "never had a preview",
        ),
        ("pull_request", pr_event(), {"GITHUB_ACTOR": "dependabot[bot]"}, RunKind.build_only, "read-only"),
        ("pull_request_target", pr_event(), {}, RunKind.skipped, "does not import such code"),
        ("push", {}, {"GITHUB_REF": "refs/tags/v1.2.3"}, RunKind.release, None),
        ("push", {}, {"GITHUB_REF": "refs/tags/v2.0.0-rc.1"}, RunKind.release, None),
        ("push", {}, {"GITHUB_REF": "refs/tags/nightly"}, RunKind.skipped, "not a semver version"),
        (
            "push",
            {"repository": {"default_branch": "main"}},
            {"GITHUB_REF": "refs/heads/main"},
            RunKind.branch,
            None,
        ),
        (
            "push",
            {"repository": {"default_branch": "main"}},
            {"GITHUB_REF": "refs/heads/dev"},
            RunKind.skipped,
            "not the default branch `main`",
        ),
        ("workflow_dispatch", {}, {"GITHUB_REF": "refs/heads/dev"}, RunKind.branch, None),
        ("schedule", {}, {"GITHUB_REF": "refs/heads/main"}, RunKind.skipped, "Event `schedule`"),
        (None, {}, {}, RunKind.skipped, "Event `unknown`"),
    ],
)
def test_triggers(
    event: str | None, payload: dict[str, Any], env: dict[str, str], kind: RunKind, note: str | None
) -> None:
    decision = _decision(event, payload, GITHUB_SHA=SHA, **env)  # type: ignore[arg-type]
    assert decision.kind is kind
    if note:
        assert decision.note and note in decision.note
    if event == "pull_request":
        # The PR's head commit, never the merge commit GitHub checks out (GITHUB_SHA).
        assert (decision.pr, decision.sha) == (7, HEAD)


def test_push_false_turns_a_deploy_into_build_only() -> None:
    decision = decide("push", {}, {"GITHUB_REF": "refs/tags/v1.0.0"}, push=False)
    assert (decision.kind, decision.intent) == (RunKind.build_only, RunKind.release)
    assert decision.note and "`push` is `false`" in decision.note


# ------------------------------------------------------------------------------------------- runner commands


def test_outputs_use_heredocs_that_survive_any_value(tmp_path: Path) -> None:
    out = tmp_path / "output"
    tricky = "line one\nghadelimiter_x\nEOF\n%0A: , ::error::not a command"
    GitHubEnv({"GITHUB_OUTPUT": str(out)}, io.StringIO()).set_outputs({"a": tricky, "b": "", "c": "{}"})
    assert read_outputs(out) == {"a": tricky, "b": "", "c": "{}"}


def test_workflow_commands_escape_data_and_properties(tmp_path: Path) -> None:
    stream = io.StringIO()
    gh = GitHubEnv({"GITHUB_WORKSPACE": str(tmp_path)}, stream)
    gh.error("bad: 100%\nsecond line", file=str(tmp_path / "pkg" / "a,b.py"), line=3, title="t: x")
    gh.mask("token-line-1\ntoken-line-2")
    with gh.group("build"):
        pass
    lines = stream.getvalue().splitlines()
    assert lines[0] == "::error file=pkg/a%2Cb.py,line=3,title=t%3A x::bad: 100%25%0Asecond line"
    assert {"::add-mask::token-line-1", "::add-mask::token-line-2"} <= set(lines)
    assert lines[-2:] == ["::group::build", "::endgroup::"]


# ---------------------------------------------------------------------------------------------- whole runs


def _run(tmp_path: Path, env: dict[str, str]) -> tuple[int, str, dict[str, str], str]:
    out, summary = tmp_path / "output", tmp_path / "summary"
    stream = io.StringIO()
    base = {
        "GITHUB_OUTPUT": str(out),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_WORKSPACE": str(tmp_path),
        "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig"),
    }
    code = main(base | env, stream)
    return code, stream.getvalue(), read_outputs(out), summary.read_text() if summary.exists() else ""


def test_a_bad_input_fails_with_one_annotation_and_deploys_nothing(tmp_path: Path) -> None:
    code, log, outputs, summary = _run(
        tmp_path, {"INPUT_PATH": "workflows.py", "INPUT_COPY-STYLE": "everything", "INPUT_API-KEY": "k3y"}
    )
    assert code == 2
    errors = [line for line in log.splitlines() if line.startswith("::error")]
    assert errors == [
        "::error title=flyte-deploy%3A bad input::input `copy-style`: 'everything' is not valid "
        "(use one of: loaded_modules, auto, all, none)"
    ]
    assert log.splitlines()[0] == "::add-mask::k3y"
    assert outputs["deployed"] == "false"
    assert "input `copy-style`" in summary
    assert not (tmp_path / ".flyte-deploy").exists()


def test_an_unknown_event_exits_zero_with_deployed_false(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"schedule": "0 0 * * *"}))
    code, log, outputs, summary = _run(
        tmp_path,
        {"INPUT_PATH": "workflows.py", "GITHUB_EVENT_NAME": "schedule", "GITHUB_EVENT_PATH": str(event)},
    )
    assert code == 0
    assert outputs == {"trigger": "skipped", "deployed": "false"}
    assert "::notice title=flyte-deploy%3A nothing to deploy::Event `schedule` has nothing to deploy" in log
    assert "nothing to deploy" in summary


def test_an_unreadable_event_payload_is_one_clear_error(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text("{not json")
    code, log, outputs, _ = _run(
        tmp_path, {"INPUT_PATH": "workflows.py", "GITHUB_EVENT_NAME": "push", "GITHUB_EVENT_PATH": str(event)}
    )
    assert code == 2
    assert f"GITHUB_EVENT_PATH {event}: not JSON (line 1" in log
    assert outputs["deployed"] == "false"


# ---------------------------------------------------------------------------------------------- workflows


def _workflow(name: str) -> dict[Any, Any]:
    return yaml.safe_load((REPO_ROOT / ".github" / "workflows" / name).read_text())


def test_ci_runs_exactly_the_readme_test_command() -> None:
    steps = _workflow("ci.yml")["jobs"]["test"]["steps"]
    assert [s["run"] for s in steps if "run" in s] == ["bash scripts/test"]
    assert "bash scripts/test" in (REPO_ROOT / "README.md").read_text()


def test_example_workflows_only_pass_inputs_the_action_declares() -> None:
    for name in ("preview.yml", "release.yml", "deploy-main.yml"):
        steps = [s for job in _workflow(name)["jobs"].values() for s in job["steps"] if s.get("uses") == "./"]
        assert steps, name
        for step in steps:
            assert set(step["with"]) <= set(ACTION["inputs"]), (
                name,
                set(step["with"]) - set(ACTION["inputs"]),
            )


def test_releases_are_never_cancelled_and_previews_cancel_superseded_runs() -> None:
    release, main_deploy, preview = (
        _workflow("release.yml"),
        _workflow("deploy-main.yml"),
        _workflow("preview.yml"),
    )
    assert release["concurrency"]["cancel-in-progress"] is False
    assert main_deploy["concurrency"]["cancel-in-progress"] is False
    # Per PR; a new push cancels the running preview, the cleanup on close is never cancelled.
    assert "github.event.pull_request.number" in preview["concurrency"]["group"]
    assert preview["concurrency"]["cancel-in-progress"] == "${{ github.event.action != 'closed' }}"
    # YAML reads the key `on` as True.
    assert set(preview[True]["pull_request"]["types"]) == {"opened", "synchronize", "reopened", "closed"}
    assert release[True]["push"]["tags"]
