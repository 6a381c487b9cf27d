"""Auth as Flyte does it, against `flyte-deploy serve` over TLS: the flyte SDK discovers the OAuth2 metadata
through AuthMetadataService, exchanges an API key's client credentials for a token and sends it; serve
checks it before reading a request. Our client does the same through the SDK's own session machinery."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.protocol import (
    Serve,
    Served,
    Tls,
    clean_env,
    flyte_api_key,
    flyte_cli,
    write_flyte_config,
)

CLIENT_ID, SECRET = "ci-deployer", "s3cr3t/with+chars"
IMAGE = "ghcr.io/flyteorg/flyte:py3.11-v2.12.1"
APP = """
import flyte

env = flyte.TaskEnvironment(name="auth_env", image=flyte.Image.from_ref_name("base"))


@env.task
async def hello(name: str) -> str:
    return f"hello {name}"
"""


def serve_with_auth(serve: Serve, tls: Tls, state: Path, *extra: str) -> Served:
    return serve(
        state,
        "--tls-cert", str(tls.cert), "--tls-key", str(tls.key), "--client-id", CLIENT_ID, *extra,
        env={"FLYTE_DEPLOY_SERVE_CLIENT_SECRET": SECRET, "SSL_CERT_FILE": str(tls.ca)},
    )  # fmt: skip


def peer(tmp_path: Path, tls: Tls, **env: str) -> tuple[Path, dict[str, str]]:
    """A project dir with a Flyte config trusting the test CA, and a clean environment for the `flyte` CLI
    (`SSL_CERT_FILE` for its token requests, which use httpx)."""
    root = tmp_path / "project"
    root.mkdir(exist_ok=True)
    (root / "app.py").write_text(APP)
    write_flyte_config(root / ".flyte" / "config.yaml", caCertFilePath=str(tls.ca))
    return root, clean_env(tmp_path / "home", SSL_CERT_FILE=str(tls.ca), **env)


def test_flyte_cli_with_an_api_key_deploys_and_reads_back(tmp_path: Path, serve: Serve, tls: Tls) -> None:
    served = serve_with_auth(serve, tls, tmp_path / "state")
    root, env = peer(tmp_path, tls, FLYTE_API_KEY=flyte_api_key(CLIENT_ID, SECRET))
    deployed = flyte_cli(
        root, "--endpoint", served.endpoint, "deploy", "--project", "flytesnacks", "--domain", "development",
        "--copy-style", "loaded_modules", "--image", f"base={IMAGE}", "app.py", "env",
        env=env,
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    listed = flyte_cli(
        root, "--endpoint", served.endpoint, "get", "task", "-p", "flytesnacks", "-d", "development", env=env
    )
    assert listed.returncode == 0, listed.stderr
    assert "auth_env.hello" in listed.stdout
    who = flyte_cli(root, "--endpoint", served.endpoint, "whoami", env=env)
    assert who.returncode == 0, who.stderr
    assert CLIENT_ID in who.stdout

    log = served.log()
    # Discovery, then a token, then the calls: as against Flyte.
    assert "GetOAuth2Metadata -> OK" in log and "POST /oauth2/token -> 200" in log
    assert "CreateUploadLocation flytesnacks/development/" in log
    assert "UNAUTHENTICATED" not in log


def test_flyte_cli_with_client_credentials_in_its_config(tmp_path: Path, serve: Serve, tls: Tls) -> None:
    served = serve_with_auth(serve, tls, tmp_path / "state")
    root, env = peer(tmp_path, tls, CI_DEPLOYER_SECRET=SECRET)
    write_flyte_config(
        root / ".flyte" / "config.yaml",
        endpoint=served.endpoint,
        caCertFilePath=str(tls.ca),
        clientId=CLIENT_ID,
        clientSecretEnvVar="CI_DEPLOYER_SECRET",
    )
    listed = flyte_cli(root, "get", "project", env=env)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "flytesnacks" in listed.stdout


def test_a_missing_or_wrong_credential_is_refused_clearly(
    tmp_path: Path, serve: Serve, tls: Tls, project_repo, flyte_deploy
) -> None:
    served = serve_with_auth(serve, tls, tmp_path / "state")
    root, env = peer(tmp_path, tls, FLYTE_API_KEY=flyte_api_key(CLIENT_ID, "wrong"))
    refused = flyte_cli(root, "--endpoint", served.endpoint, "get", "project", env=env)
    assert refused.returncode != 0
    assert "invalid_client" in refused.stdout + refused.stderr

    repo = project_repo("flat")
    config = write_flyte_config(tmp_path / "ours.yaml", caCertFilePath=str(tls.ca))
    args = (
        "deploy",
        "workflows.py",
        "env",
        "--mode",
        "bundle",
        "--endpoint",
        served.endpoint,
        "--config",
        str(config),
    )
    ours_env = {"SSL_CERT_FILE": str(tls.ca)}
    missing = flyte_deploy(*args, cwd=repo.path, env=ours_env)
    assert missing.code != 0
    assert missing.error_line == (
        f"error: control plane {served.url} refused to look up project flytesnacks: UNAUTHENTICATED: missing "
        "bearer token (this control plane requires authentication) (check the control plane credential: "
        "--api-key, or the Flyte config)"
    )
    wrong = flyte_deploy(*args, "--api-key", flyte_api_key(CLIENT_ID, "wrong"), cwd=repo.path, env=ours_env)
    assert wrong.code != 0
    assert wrong.error_line.startswith(
        f"error: control plane {served.url} refused to look up project flytesnacks: "
    )
    assert "invalid_client" in wrong.error_line
    assert "Traceback" not in missing.stderr + wrong.stderr
    assert [line for line in wrong.stderr.splitlines() if "error" in line.lower()] == [wrong.error_line]
    # Refused before anything was uploaded.
    assert not (served.state_dir / "bundles").exists()


def test_our_client_authenticates_with_the_same_api_key(
    tmp_path: Path, serve: Serve, tls: Tls, project_repo, flyte_deploy
) -> None:
    served = serve_with_auth(serve, tls, tmp_path / "state")
    repo = project_repo("flat")
    config = write_flyte_config(tmp_path / "ours.yaml", caCertFilePath=str(tls.ca))
    deployed = flyte_deploy(
        "deploy", "workflows.py", "env", "--mode", "bundle", "--endpoint", served.endpoint,
        "--config", str(config), "--json", cwd=repo.path,
        env={"SSL_CERT_FILE": str(tls.ca), "FLYTE_API_KEY": flyte_api_key(CLIENT_ID, SECRET)},
    )  # fmt: skip
    assert deployed.code == 0, deployed.stderr
    assert {e["status"] for e in deployed.json["deployment"]["environments"]} == {"registered"}
    # Through the data proxy, over HTTPS with the same CA.
    bundle = deployed.json["artifacts"]["bundle"]
    assert bundle["uri"].startswith((served.state_dir / "bundles" / "flytesnacks").as_uri())


def test_tokens_of_an_external_issuer_are_accepted(
    tmp_path: Path, serve: Serve, tls: Tls, project_repo, flyte_deploy
) -> None:
    issuer = serve_with_auth(serve, tls, tmp_path / "issuer")
    plane = serve(
        tmp_path / "plane",
        "--tls-cert", str(tls.cert), "--tls-key", str(tls.key), "--auth-issuer", issuer.url,
        env={"SSL_CERT_FILE": str(tls.ca)},
    )  # fmt: skip
    root, env = peer(tmp_path, tls, FLYTE_API_KEY=flyte_api_key(CLIENT_ID, SECRET))
    listed = flyte_cli(root, "--endpoint", plane.endpoint, "get", "project", env=env)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    # The SDK found the issuer through the plane's metadata and got its token there.
    assert "POST /oauth2/token -> 200" in issuer.log()
    assert "POST /oauth2/token" not in plane.log()
    assert "GET /oauth2/jwks -> 200" in issuer.log()
    # A token the issuer did not sign is refused.
    refused = _post(plane.url + "/flyteidl2.project.ProjectService/ListProjects", tls, token="a.b.c")
    assert refused[0] == 401 and json.loads(refused[1])["code"] == "unauthenticated"


def test_token_endpoint_answers_as_oauth2_says(tmp_path: Path, serve: Serve, tls: Tls) -> None:
    served = serve_with_auth(serve, tls, tmp_path / "state", "--api-key", "static-key")
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET}
    status, body = _post(served.url + "/oauth2/token", tls, form=form)
    assert status == 200
    token = json.loads(body)
    assert token["token_type"] == "Bearer" and token["expires_in"] == 3600
    assert _post(served.url + "/oauth2/token", tls, form={**form, "grant_type": "password"})[0] == 400
    assert json.loads(_post(served.url + "/oauth2/token", tls, form={**form, "client_secret": "x"})[1]) == {
        "error": "invalid_client",
        "error_description": "unknown client id or wrong secret",
    }
    rpc = served.url + "/flyteidl2.project.ProjectService/ListProjects"
    assert _post(rpc, tls, token=token["access_token"])[0] == 200
    assert _post(rpc, tls, token="static-key")[0] == 200  # the static key keeps working beside tokens
    status, body = _post(rpc, tls)
    assert status == 401 and "missing bearer token" in body


def _post(
    url: str, tls: Tls, *, token: str | None = None, form: dict[str, str] | None = None
) -> tuple[int, str]:
    import ssl

    context = ssl.create_default_context(cafile=str(tls.ca))
    if form is not None:
        data, headers = (
            urllib.parse.urlencode(form).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
    else:
        data, headers = b"{}", {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize("flag", [("--client-id", "ci"), ("--tls-cert", "x.pem")])
def test_serve_auth_flags_are_checked(tmp_path: Path, flyte_deploy, flag: tuple[str, str]) -> None:
    result = flyte_deploy("serve", "--port", "0", "--state-dir", str(tmp_path / "s"), *flag, cwd=tmp_path)
    assert result.code == 2
    assert result.error_line in (
        "error: --client-id ci: set its secret in FLYTE_DEPLOY_SERVE_CLIENT_SECRET",
        "error: --tls-cert and --tls-key go together",
    )
