"""flyteidl2 `AppService` over the SQLite state: the embedded control plane's apps.

It records apps; it runs none (no cluster is attached), so an app's status says it is not assigned to a
cluster, or stopped when its desired state is. What a client can rely on:
- Create refuses an app that exists (ALREADY_EXISTS: the flyte SDK then fetches it, compares the specs
  and updates it, as `flyte deploy` does) and a spec with neither a container nor a pod; it records who
  created the app (`spec.creator`: nobody is authenticated here, so the plane names itself, where a
  backend names the caller; the SDK copies it into every update, which must then carry one);
- Update names the revision it replaces (`metadata.revision`; ABORTED when another revision landed since,
  0 skips the check) and becomes the next revision, kept with its reason;
- Get / Delete answer NOT_FOUND for an unknown app; List pages apps by project or org;
- with a public URL pattern (`https://{name}-{project}-{domain}.apps.example.com`), each app's status
  carries its URL, as a backend with an ingress base domain reports it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from flyteidl2.app import app_definition_pb2 as ad
from flyteidl2.app import app_payload_pb2 as ap
from flyteidl2.app.app_service_connect import AppServiceSync
from flyteidl2.common import identifier_pb2, identity_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from deployer.controlplane import app_store, listing
from deployer.controlplane.app_store import AppKey, StoredApp
from deployer.controlplane.store import TaskStore
from deployer.controlplane.validation import validate

CREATOR = identity_pb2.EnrichedIdentity(
    application=identity_pb2.Application(
        id=identifier_pb2.ApplicationIdentifier(subject="flyte-deploy"),
        spec=identity_pb2.AppSpec(name="flyte-deploy embedded control plane"),
    )
)
"""Who created an app, when nobody is authenticated (a backend records the caller's identity)."""
_NOT_RUN = "the embedded control plane records apps and runs none: no cluster is assigned"
_Status = ad.Status.DeploymentStatus
_FIELDS = {
    "name": lambda s: s.key.name,
    "status_phase": lambda s: _Status.Name(_phase(s.app)),
    "desired_state": lambda s: ad.Spec.DesiredState.Name(s.app.spec.desired_state),
}
_SORT_KEYS = {
    "name": lambda s: s.key.name,
    "created_at": lambda s: s.created_at_ns,
    "updated_at": lambda s: s.updated_at_ns,
    "revision": lambda s: s.revision,
}


class AppService(AppServiceSync):  # type: ignore[misc]
    def __init__(self, store: TaskStore, *, public_url: str | None = None) -> None:
        self.store = store
        self.public_url = public_url
        """Pattern of an app's public URL (`{name}`, `{project}`, `{domain}`), or None: no URL reported."""

    def create(self, request: ap.CreateRequest, ctx: RequestContext[Any, Any]) -> ap.CreateResponse:
        validate(request)
        _require_payload(request.app)
        key = _key(request.app.metadata.id)
        with self.store.transaction() as db:
            existing = app_store.get(db, key)
            if existing is not None:
                raise ConnectError(
                    Code.ALREADY_EXISTS,
                    f"app {key} exists at revision {existing.revision}: update it instead",
                )
            app = ad.App()
            app.CopyFrom(request.app)
            if not app.spec.HasField("creator"):
                app.spec.creator.CopyFrom(CREATOR)
            stored = app_store.create(db, key, app, time.time_ns(), "created")
        assert stored is not None  # checked in the same transaction
        return ap.CreateResponse(app=self._app(stored, request.app.metadata.id.org))

    def get(self, request: ap.GetRequest, ctx: RequestContext[Any, Any]) -> ap.GetResponse:
        validate(request)
        if request.WhichOneof("identifier") != "app_id":
            raise ConnectError(Code.INVALID_ARGUMENT, "identifier: look apps up by app_id")
        key = _key(request.app_id)
        with self.store.reading() as db:
            found = app_store.get(db, key)
        if found is None:
            raise ConnectError(Code.NOT_FOUND, f"app {key} not found")
        return ap.GetResponse(app=self._app(found, request.app_id.org))

    def update(self, request: ap.UpdateRequest, ctx: RequestContext[Any, Any]) -> ap.UpdateResponse:
        validate(request)
        _require_payload(request.app)
        key = _key(request.app.metadata.id)
        sent = request.app.metadata.revision
        with self.store.transaction() as db:
            existing = app_store.get(db, key)
            if existing is None:
                raise ConnectError(Code.NOT_FOUND, f"app {key} not found: create it first")
            if sent and sent != existing.revision:
                raise ConnectError(
                    Code.ABORTED,
                    f"app {key} is at revision {existing.revision}, not {sent}: fetch it again and retry",
                )
            stored = app_store.update(db, existing, request.app, time.time_ns(), request.reason or "updated")
        return ap.UpdateResponse(app=self._app(stored, request.app.metadata.id.org))

    def delete(self, request: ap.DeleteRequest, ctx: RequestContext[Any, Any]) -> ap.DeleteResponse:
        validate(request)
        key = _key(request.app_id)
        with self.store.transaction() as db:
            if not app_store.delete(db, key):
                raise ConnectError(Code.NOT_FOUND, f"app {key} not found")
        return ap.DeleteResponse()

    def list(self, request: ap.ListRequest, ctx: RequestContext[Any, Any]) -> ap.ListResponse:
        validate(request)
        scope = request.WhichOneof("filter_by")
        if scope in ("cluster_id", "artifact"):
            raise ConnectError(Code.UNIMPLEMENTED, f"filter_by {scope}: list apps by project or org")
        org = request.org
        with self.store.reading() as db:
            if scope == "project":
                org = request.project.organization
                found = app_store.listed(db, project=request.project.name, domain=request.project.domain)
            else:
                found = app_store.listed(db)
        page, token = listing.apply(found, request.request, fields=_FIELDS, sort_keys=_SORT_KEYS)
        total = len(found) if request.include_total_count else 0
        return ap.ListResponse(apps=[self._app(s, org) for s in page], token=token, total_count=total)

    def watch(self, request: ap.WatchRequest, ctx: RequestContext[Any, Any]) -> Iterator[ap.WatchResponse]:
        raise ConnectError(Code.UNIMPLEMENTED, f"Watch: {_NOT_RUN}, so no app ever changes state")

    # -- messages ---------------------------------------------------------------------------------------

    def _app(self, stored: StoredApp, org: str) -> ad.App:
        app = stored.app
        app.metadata.id.org = org
        app.status.CopyFrom(self._status(stored, app))
        return app

    def _status(self, stored: StoredApp, app: ad.App) -> ad.Status:
        phase = _phase(app)
        status = ad.Status(
            created_at=_timestamp(stored.created_at_ns),
            last_updated_at=_timestamp(stored.updated_at_ns),
            conditions=[
                ad.Condition(
                    last_transition_time=_timestamp(stored.updated_at_ns),
                    deployment_status=phase,
                    message="stopped" if phase == _Status.DEPLOYMENT_STATUS_STOPPED else _NOT_RUN,
                    revision=stored.revision,
                )
            ],
        )
        if self.public_url:
            k = stored.key
            url = self.public_url
            for placeholder, value in (("{name}", k.name), ("{project}", k.project), ("{domain}", k.domain)):
                url = url.replace(placeholder, value.lower())
            status.ingress.public_url = url
        return status


def _phase(app: ad.App) -> ad.Status.DeploymentStatus:
    if app.spec.desired_state == ad.Spec.DesiredState.DESIRED_STATE_STOPPED:
        return _Status.DEPLOYMENT_STATUS_STOPPED
    return _Status.DEPLOYMENT_STATUS_UNASSIGNED


def _require_payload(app: ad.App) -> None:
    if app.spec.WhichOneof("app_payload") is None:
        raise ConnectError(Code.INVALID_ARGUMENT, "app.spec: must include a container or a pod")


def _key(app_id: ad.Identifier) -> AppKey:
    return AppKey(app_id.project, app_id.domain, app_id.name)


def _timestamp(ns: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(ns)
    return stamp
