"""The registry HTTP API v2 client against real registries: the stack's, and one with htpasswd auth."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from deployer.errors import RegistryError
from deployer.images.auth import Credential, Credentials, docker_config_credential, ecr_credential
from deployer.images.registry import DeleteResult, RegistryClient
from tests.fixtures.images import AuthRegistry, PushTiny
from tests.fixtures.stack import registry_manifest_digest

pytestmark = pytest.mark.stack


def test_manifest_digest_matches_the_pushed_image_and_is_none_when_missing(
    registry_url: str, unique_repo: str, push_tiny_image: PushTiny
) -> None:
    repo = f"{registry_url}/{unique_repo}"
    with RegistryClient() as client:
        assert client.manifest_digest(repo, "v1") is None  # repository does not exist yet
        digest = push_tiny_image(repo, "v1")
        assert digest == registry_manifest_digest(registry_url, unique_repo, "v1")
        assert client.manifest_digest(repo, "nope") is None
        assert client.manifest_digest(repo, digest) == digest
        assert client.get_manifest(repo, "v1") is not None
        assert len(client.get_manifest(repo, "v1").layers) == 1  # type: ignore[union-attr]


def test_retag_copies_the_manifest_under_a_new_tag(
    registry_url: str, unique_repo: str, push_tiny_image: PushTiny
) -> None:
    repo = f"{registry_url}/{unique_repo}"
    digest = push_tiny_image(repo, "build-1")
    with RegistryClient() as client:
        assert client.retag(repo, "build-1", "1.2.3") == digest
        assert client.retag(repo, digest, "latest") == digest
        assert client.list_tags(repo) == ("1.2.3", "build-1", "latest")
        assert registry_manifest_digest(registry_url, unique_repo, "latest") == digest
        with pytest.raises(RegistryError, match=r"cannot tag .*:x: .*:missing does not exist"):
            client.retag(repo, "missing", "x")


def test_delete_tag_on_a_registry_that_deletes_manifests_only(
    registry_url: str, unique_repo: str, push_tiny_image: PushTiny
) -> None:
    repo = f"{registry_url}/{unique_repo}"
    shared = push_tiny_image(repo, "build-1", content="shared")
    push_tiny_image(repo, "pr-7", content="alone")
    with RegistryClient() as client:
        client.retag(repo, "build-1", "pr-8")
        # Distribution 2.8 cannot drop one tag of a manifest that other tags use: nothing is deleted.
        assert client.delete_tag(repo, "pr-8") is DeleteResult.shared
        assert client.manifest_digest(repo, "build-1") == shared
        assert client.manifest_digest(repo, "pr-8") == shared
        # A manifest only this tag uses is deleted by digest.
        assert client.delete_tag(repo, "pr-7") is DeleteResult.manifest
        assert client.manifest_digest(repo, "pr-7") is None
        assert client.delete_tag(repo, "pr-7") is DeleteResult.missing
        # Forced: the shared manifest goes, with every tag on it.
        assert client.delete_tag(repo, "pr-8", delete_shared_manifest=True) is DeleteResult.manifest
        assert client.manifest_digest(repo, "build-1") is None


def test_list_tags_of_a_missing_repository_is_empty(registry_url: str, unique_repo: str) -> None:
    with RegistryClient() as client:
        assert client.list_tags(f"{registry_url}/{unique_repo}") == ()


# ---------------------------------------------------------------------------------------------- auth


def test_basic_auth_registry_with_explicit_credentials(
    auth_registry: AuthRegistry, push_tiny_image: PushTiny
) -> None:
    credential = Credential(auth_registry.username, SecretStr(auth_registry.password), source="explicit")
    credentials = Credentials(explicit={auth_registry.host: credential})
    repo = f"{auth_registry.host}/team/app"
    # The engine pushes with the same credentials (docker-py auth_config).
    digest = push_tiny_image(repo, "v1", credentials=credentials)
    with RegistryClient(credentials) as client:
        assert client.retag(repo, "v1", "v2") == digest
        assert client.list_tags(repo) == ("v1", "v2")
    assert auth_registry.password not in repr(credential)


def test_basic_auth_registry_without_credentials_fails_clearly(auth_registry: AuthRegistry) -> None:
    anonymous = RegistryClient(Credentials(docker_config=Path("/nonexistent/config.json")))
    expected = r"needs a username and password: set FLYTE_DEPLOY_REGISTRY_USERNAME"
    with anonymous as client, pytest.raises(RegistryError, match=expected):
        client.manifest_digest(f"{auth_registry.host}/team/app", "v1")
    wrong = Credential(auth_registry.username, SecretStr("wrong"))
    refused = RegistryClient(Credentials(explicit={auth_registry.host: wrong}))
    with refused as client, pytest.raises(RegistryError, match=r"refused the credentials") as info:
        client.manifest_digest(f"{auth_registry.host}/team/app", "v1")
    assert "wrong" not in str(info.value)


def test_docker_config_credentials(auth_registry: AuthRegistry, tmp_path: Path) -> None:
    pair = base64.b64encode(f"{auth_registry.username}:{auth_registry.password}".encode()).decode()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {auth_registry.host: {"auth": pair}}}))
    credential = docker_config_credential(auth_registry.host, config)
    assert credential is not None and credential.username == auth_registry.username
    with RegistryClient(Credentials(docker_config=config)) as client:
        assert client.list_tags(f"{auth_registry.host}/never/pushed") == ()


def test_explicit_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYTE_DEPLOY_REGISTRY_USERNAME", "bot")
    monkeypatch.setenv("FLYTE_DEPLOY_REGISTRY_PASSWORD", "tok")
    credential = Credentials.from_env("ghcr.io/acme").for_host("ghcr.io")
    assert credential is not None and credential.username == "bot" and credential.source == "explicit"
    assert credential.engine_auth() == {"username": "bot", "password": "tok"}


def test_ecr_token_comes_from_get_authorization_token(
    stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stack's moto server speaks ECR too; boto3 is pointed at it like at any AWS endpoint.
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack_env["FLYTE_DEPLOY_STACK_S3_ENDPOINT"])
    credential = ecr_credential("123456789012.dkr.ecr.us-east-1.amazonaws.com")
    assert credential.username == "AWS" and credential.password.get_secret_value()
    assert credential.source == "ecr"
    resolved = Credentials().for_host("123456789012.dkr.ecr.us-east-1.amazonaws.com")
    assert resolved is not None and resolved.source == "ecr"
