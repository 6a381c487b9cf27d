"""Which trigger fired, and what this run therefore does (preview, cleanup, release, branch, nothing).

Pure: the event name, its payload and a few `GITHUB_*` variables in, a `Decision` out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deployer.models import Model
from deployer.report.models import RunKind
from deployer.versioning import parse_release

PREVIEW_ACTIONS = frozenset({"opened", "synchronize", "reopened"})
# Bots whose pull requests run with a read-only token and without secrets, like forks.
READ_ONLY_ACTORS = frozenset({"dependabot[bot]"})


class Decision(Model):
    kind: RunKind
    intent: RunKind
    """What the event asks for; differs from `kind` when a run is downgraded to build-only."""
    event: str | None = None
    pr: int | None = None
    sha: str | None = None
    """The commit to build: the PR head on pull_request events (never the merge commit)."""
    ref: str | None = None
    tag: str | None = None
    """The semver tag of a release."""
    note: str | None = None
    """Why the run is build-only or skipped."""

    @property
    def deploys(self) -> bool:
        return self.kind in (RunKind.preview, RunKind.release, RunKind.branch)


def decide(
    event: str | None, payload: Mapping[str, Any], environ: Mapping[str, str], *, push: bool = True
) -> Decision:
    """`push=False` (the `push` input) turns any deploy into build-only."""
    decision = _by_event(event or "", payload, environ)
    if decision.kind in (RunKind.preview, RunKind.release, RunKind.branch) and not push:
        return decision.model_copy(
            update={
                "kind": RunKind.build_only,
                "note": "Input `push` is `false`: images are built, not pushed.",
            }
        )
    return decision


def _by_event(event: str, payload: Mapping[str, Any], environ: Mapping[str, str]) -> Decision:
    ref = environ.get("GITHUB_REF") or None
    sha = environ.get("GITHUB_SHA") or None
    if event == "pull_request":
        return _pull_request(payload, environ)
    if event == "pull_request_target":
        return _skip(
            event,
            "`pull_request_target` runs with the base repository's secrets while the code comes from the "
            "pull request: this action does not import such code. Trigger it on `pull_request`.",
            ref=ref,
            sha=sha,
        )
    if event in ("push", "workflow_dispatch"):
        return _push(event, payload, ref, sha)
    return _skip(
        event,
        f"Event `{event or 'unknown'}` has nothing to deploy: use pull_request, push or workflow_dispatch.",
        ref=ref,
        sha=sha,
    )


def _pull_request(payload: Mapping[str, Any], environ: Mapping[str, str]) -> Decision:
    pull = payload.get("pull_request") or {}
    number = pull.get("number") or payload.get("number")
    head_sha = _dig(pull, "head", "sha")
    action = payload.get("action")
    head_repo = _dig(pull, "head", "repo", "full_name")
    base_repo = _dig(pull, "base", "repo", "full_name") or environ.get("GITHUB_REPOSITORY")
    fork = head_repo != base_repo
    actor = environ.get("GITHUB_ACTOR", "")
    base = {"event": "pull_request", "pr": number, "sha": head_sha, "ref": environ.get("GITHUB_REF") or None}

    if action == "closed":
        if fork:
            return _skip(
                note=f"Pull request #{number} comes from a fork: it never had a preview to clean up.", **base
            )
        return Decision(kind=RunKind.cleanup, intent=RunKind.cleanup, **base)
    if action not in PREVIEW_ACTIONS:
        return _skip(
            note=f"Pull request action `{action}` does not change the code: nothing to deploy.", **base
        )
    if fork:
        note = (
            f"Pull request #{number} comes from the fork `{head_repo or 'deleted repository'}`: its token is "
            "read-only and secrets are withheld, so images are built but nothing is pushed or deployed."
        )
        return Decision(kind=RunKind.build_only, intent=RunKind.preview, note=note, **base)
    if actor in READ_ONLY_ACTORS:
        note = (
            f"Runs started by `{actor}` have a read-only token and no secrets: images are built but "
            "nothing is pushed or deployed."
        )
        return Decision(kind=RunKind.build_only, intent=RunKind.preview, note=note, **base)
    return Decision(kind=RunKind.preview, intent=RunKind.preview, **base)


def _push(event: str, payload: Mapping[str, Any], ref: str | None, sha: str | None) -> Decision:
    ref = ref or payload.get("ref")
    sha = sha or payload.get("after")
    if ref and ref.startswith("refs/tags/"):
        tag = ref.removeprefix("refs/tags/")
        if parse_release(tag) is None:
            return _skip(
                event, f"Tag `{tag}` is not a semver version (vX.Y.Z): not a release.", ref=ref, sha=sha
            )
        return Decision(kind=RunKind.release, intent=RunKind.release, event=event, sha=sha, ref=ref, tag=tag)
    if ref and ref.startswith("refs/heads/"):
        branch = ref.removeprefix("refs/heads/")
        default = _dig(payload, "repository", "default_branch") or _dig(
            payload, "repository", "master_branch"
        )
        if event == "push" and default and branch != default:
            return _skip(
                event,
                f"Push to `{branch}`, not the default branch `{default}`: nothing to deploy.",
                ref=ref,
                sha=sha,
            )
        return Decision(kind=RunKind.branch, intent=RunKind.branch, event=event, sha=sha, ref=ref)
    return _skip(
        event, f"Ref `{ref or 'unknown'}` is neither a branch nor a tag: nothing to deploy.", ref=ref, sha=sha
    )


def _skip(event: str | None, note: str, **fields: Any) -> Decision:
    return Decision(kind=RunKind.skipped, intent=RunKind.skipped, event=event, note=note, **fields)


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data
