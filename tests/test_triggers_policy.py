"""Which triggers may fire, per kind of deploy: the Action's previews pause every trigger and name their apps
apart, releases register triggers as the code says, default-branch pushes follow the `triggers` input; a bad
input value is one error naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deployer.errors import UsageError
from deployer.models import TriggerPolicy
from entrypoint.events import decide
from entrypoint.inputs import read_inputs, to_request

HEAD = "c" * 40


def pull(number: int = 7) -> dict[str, Any]:
    return {
        "action": "opened",
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"sha": HEAD, "ref": "feature", "repo": {"full_name": "acme/app"}},
            "base": {"ref": "main", "repo": {"full_name": "acme/app"}},
        },
        "repository": {"full_name": "acme/app", "default_branch": "main"},
    }


def push(ref: str) -> dict[str, Any]:
    return {"ref": ref, "after": HEAD, "repository": {"full_name": "acme/app", "default_branch": "main"}}


def requests(tmp_path: Path, **inputs: str) -> dict[str, Any]:
    (tmp_path / "workflows.py").write_text("")
    environ = {"INPUT_PATH": "workflows.py", "INPUT_ALL": "true"} | {
        f"INPUT_{k.replace('_', '-').upper()}": v for k, v in inputs.items()
    }
    read = read_inputs(environ)
    env = {"GITHUB_REPOSITORY": "acme/app"}
    return {
        "preview": to_request(read, decide("pull_request", pull(), env), tmp_path, version="pr-7-x").settings,
        "release": to_request(
            read, decide("push", push("refs/tags/v1.2.0"), env | {"GITHUB_REF": "refs/tags/v1.2.0"}), tmp_path
        ).settings,
        "branch": to_request(
            read, decide("push", push("refs/heads/main"), env | {"GITHUB_REF": "refs/heads/main"}), tmp_path
        ).settings,
    }


def test_by_default_only_previews_pause_triggers_and_rename_apps(tmp_path: Path) -> None:
    settings = requests(tmp_path)
    assert {kind: s.trigger_policy for kind, s in settings.items()} == {
        "preview": TriggerPolicy.inactive,
        "release": TriggerPolicy.as_code,
        "branch": TriggerPolicy.as_code,
    }
    assert {kind: s.app_suffix for kind, s in settings.items()} == {
        "preview": "-pr-7",
        "release": "",
        "branch": "",
    }


def test_the_triggers_input_applies_to_the_default_branch_only(tmp_path: Path) -> None:
    settings = requests(tmp_path, triggers="inactive")
    assert settings["branch"].trigger_policy is TriggerPolicy.inactive
    assert settings["release"].trigger_policy is TriggerPolicy.as_code  # a release runs as the code says
    assert requests(tmp_path, triggers="as-code")["preview"].trigger_policy is TriggerPolicy.inactive


def test_a_preview_with_its_own_domain_keeps_its_app_names(tmp_path: Path) -> None:
    settings = requests(tmp_path, preview_domain="pr-{pr}")
    assert (settings["preview"].domain, settings["preview"].app_suffix) == ("pr-7", "")
    assert settings["preview"].trigger_policy is TriggerPolicy.inactive


def test_a_bad_policy_is_one_error_naming_the_input(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as bad:
        requests(tmp_path, triggers="sometimes")
    assert str(bad.value) == "input `triggers`: 'sometimes' is not valid (use one of: as-code, inactive)"
