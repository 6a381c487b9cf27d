"""The control plane side of a deploy: Flyte's wire protocol, spoken by our client and our server.

- `base`: the `ControlPlane` interface every deploy talks to; `remote` (ConnectRPC to an endpoint) and
  `embedded` (the same handlers in-process, SQLite state) implement it; `open_control_plane` picks one.
- `serialize`: tasks → flyteidl2 `TaskSpec` through the flyte SDK's own serializer.
- `specs`: how two specs compare (deterministic bytes), shared by client and server.
- The embedded control plane's server side: `store` (SQLite), `validation`, `service` (the `TaskService`
  logic), `server` (HTTP, for `flyte-deploy serve` and peers such as the `flyte` CLI).

Submodules are imported on demand: importing this package loads nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deployer.controlplane.base import ControlPlane
    from deployer.settings import Settings


def open_control_plane(settings: Settings) -> ControlPlane:
    """The plane `settings` name: `endpoint` (remote, reached and authenticated as the flyte SDK would with
    the same Flyte config), else the embedded one in the state dir."""
    if settings.endpoint:
        from deployer.controlplane.flyteconfig import remote_target
        from deployer.controlplane.remote import RemoteControlPlane

        return RemoteControlPlane(target=remote_target(settings))
    from deployer.controlplane.embedded import EmbeddedControlPlane

    return EmbeddedControlPlane(settings.state, app_url=settings.app_url)
