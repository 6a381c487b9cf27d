"""The control plane side of a deploy: Flyte's wire protocol, spoken by our client and our server.

- `serialize`: tasks → flyteidl2 `TaskSpec` through the flyte SDK's own serializer.
- `specs`: how two specs compare (deterministic bytes), shared by client and server.
- `client`: `ControlPlaneClient`, flyteidl2 `TaskService` over ConnectRPC, for every deploy.
- The embedded control plane (`flyte-deploy serve`, or in-process for a one-shot deploy when no
  endpoint is given): `store` (SQLite), `validation`, `service` (the `TaskService` logic), `server`
  (HTTP), `embedded` (start/stop around one deploy).

Submodules are imported on demand: importing this package loads nothing heavy.
"""
