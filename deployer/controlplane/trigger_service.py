"""flyteidl2 `TriggerService` over the SQLite state: the embedded control plane's triggers.

Triggers arrive with their task (DeployTask, see `trigger_store`) or alone (DeployTrigger, what
`flyte.remote.Trigger.create` sends). What a client can rely on, as with the open-source backend:
- GetTriggerDetails / GetTriggerRevisionDetails answer NOT_FOUND for an unknown (or deleted) trigger or
  revision; ListTriggers lists live triggers by project, task name or task version, active first;
  GetTriggerRevisionHistory lists every revision, newest first;
- UpdateTriggers (activate / deactivate) and DeleteTriggers skip names that do not exist or are already in
  that state, and each change is a new revision;
- a schedule the backend could not parse is INVALID_ARGUMENT naming the trigger (`cron.py`).
It is single-tenant like the task service: `org` is accepted and echoed, never scoped by.
"""

from __future__ import annotations

import time
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from flyteidl2.common import identifier_pb2 as ids
from flyteidl2.task.common_pb2 import TriggerAutomationSpec
from flyteidl2.trigger import trigger_definition_pb2 as tdef
from flyteidl2.trigger import trigger_service_pb2 as tsv
from flyteidl2.trigger.trigger_service_connect import TriggerServiceSync
from google.protobuf.timestamp_pb2 import Timestamp

from deployer.controlplane import listing, trigger_store
from deployer.controlplane.cron import cron_problem
from deployer.controlplane.store import TaskStore
from deployer.controlplane.trigger_store import StaleRevision, StoredTrigger, TriggerKey
from deployer.controlplane.validation import validate

_FIELDS = {
    "name": lambda t: t.key.name,
    "task_name": lambda t: t.key.task_name,
    "task_version": lambda t: t.task_version,
    "active": lambda t: "true" if t.active else "false",
}
_SORT_KEYS = {
    "name": lambda t: t.key.name,
    "task_name": lambda t: t.key.task_name,
    "updated_at": lambda t: t.updated_at_ns,
    "deployed_at": lambda t: t.deployed_at_ns,
    "created_at": lambda t: t.deployed_at_ns,
    "active": lambda t: t.active,
}


class TriggerService(TriggerServiceSync):  # type: ignore[misc]
    def __init__(self, store: TaskStore) -> None:
        self.store = store

    def deploy_trigger(
        self, request: tsv.DeployTriggerRequest, ctx: RequestContext[Any, Any]
    ) -> tsv.DeployTriggerResponse:
        validate(request)
        check_schedule(request.name.name, request.automation_spec)
        key = _key(request.name)
        new = trigger_store.from_spec(key, request.spec, request.automation_spec, time.time_ns())
        try:
            with self.store.transaction() as db:
                saved = trigger_store.upsert(db, new, time.time_ns(), expected_revision=request.revision)
        except StaleRevision as exc:
            raise ConnectError(Code.ABORTED, str(exc)) from None
        return tsv.DeployTriggerResponse(trigger=details(saved, request.name.org))

    def get_trigger_details(
        self, request: tsv.GetTriggerDetailsRequest, ctx: RequestContext[Any, Any]
    ) -> tsv.GetTriggerDetailsResponse:
        validate(request)
        n = request.name
        with self.store.reading() as db:
            found = trigger_store.find_live(db, n.project, n.domain, n.task_name, n.name)
        if found is None:
            raise ConnectError(Code.NOT_FOUND, f"trigger {_shown(n)} not found")
        return tsv.GetTriggerDetailsResponse(trigger=details(found, n.org))

    def get_trigger_revision_details(
        self, request: tsv.GetTriggerRevisionDetailsRequest, ctx: RequestContext[Any, Any]
    ) -> tsv.GetTriggerRevisionDetailsResponse:
        validate(request)
        n = request.id.name
        with self.store.reading() as db:
            found = trigger_store.revision(db, _key(n), request.id.revision)
        if found is None:
            raise ConnectError(Code.NOT_FOUND, f"trigger {_shown(n)} has no revision {request.id.revision}")
        return tsv.GetTriggerRevisionDetailsResponse(trigger=details(found, n.org))

    def list_triggers(
        self, request: tsv.ListTriggersRequest, ctx: RequestContext[Any, Any]
    ) -> tsv.ListTriggersResponse:
        validate(request)
        scope = request.WhichOneof("scope_by")
        org = request.org
        with self.store.reading() as db:
            if scope == "project_id":
                p = request.project_id
                org = p.organization
                found = trigger_store.live(db, project=p.name, domain=p.domain)
            elif scope == "task_id":
                t = request.task_id
                org = t.org
                found = trigger_store.live(
                    db, project=t.project, domain=t.domain, task_name=t.name, task_version=t.version
                )
            elif scope == "task_name":
                n = request.task_name
                org = n.org
                found = trigger_store.live(db, project=n.project, domain=n.domain, task_name=n.name)
            else:
                found = trigger_store.live(db)
        page, token = listing.apply(found, request.request, fields=_FIELDS, sort_keys=_SORT_KEYS)
        return tsv.ListTriggersResponse(triggers=[listed(t, org) for t in page], token=token)

    def get_trigger_revision_history(
        self, request: tsv.GetTriggerRevisionHistoryRequest, ctx: RequestContext[Any, Any]
    ) -> tsv.GetTriggerRevisionHistoryResponse:
        validate(request)
        n = request.name
        with self.store.reading() as db:
            found = trigger_store.revisions(db, _key(n))
        page, token = listing.page(found, request.request)
        return tsv.GetTriggerRevisionHistoryResponse(
            triggers=[_revision(t, n.org) for t in page], token=token
        )

    def update_triggers(
        self, request: tsv.UpdateTriggersRequest, ctx: RequestContext[Any, Any]
    ) -> tsv.UpdateTriggersResponse:
        validate(request)
        now = time.time_ns()
        with self.store.transaction() as db:
            for name in request.names:
                trigger_store.set_active(db, _key(name), request.active, now)
        return tsv.UpdateTriggersResponse()

    def delete_triggers(
        self, request: tsv.DeleteTriggersRequest, ctx: RequestContext[Any, Any]
    ) -> tsv.DeleteTriggersResponse:
        validate(request)
        now = time.time_ns()
        with self.store.transaction() as db:
            for name in request.names:
                trigger_store.delete(db, _key(name), now)
        return tsv.DeleteTriggersResponse()


def check_schedule(name: str, automation: TriggerAutomationSpec) -> None:
    """INVALID_ARGUMENT for a cron schedule the backend cannot parse (`validateCronExpression`)."""
    if not automation.HasField("schedule"):
        return
    schedule = automation.schedule
    kind = schedule.WhichOneof("expression")
    if kind == "cron":
        problem = cron_problem(schedule.cron.expression, schedule.cron.timezone)
    elif kind == "cron_expression":
        problem = cron_problem(schedule.cron_expression)
    else:
        return
    if problem:
        raise ConnectError(Code.INVALID_ARGUMENT, f"trigger {name!r} has an invalid cron schedule: {problem}")


# ---------------------------------------------------------------------------------------------- messages


def details(t: StoredTrigger, org: str) -> tdef.TriggerDetails:
    return tdef.TriggerDetails(
        id=_identifier(t, org),
        spec=t.spec,
        status=_status(t),
        automation_spec=t.automation_spec,
        description=t.description,
    )


def listed(t: StoredTrigger, org: str) -> tdef.Trigger:
    return tdef.Trigger(
        id=_identifier(t, org), status=_status(t), active=t.active, automation_spec=t.automation_spec
    )


def _revision(t: StoredTrigger, org: str) -> tdef.TriggerRevision:
    return tdef.TriggerRevision(
        id=_identifier(t, org), status=_status(t), action=t.action, created_at=_timestamp(t.created_at_ns)
    )


def _identifier(t: StoredTrigger, org: str) -> ids.TriggerIdentifier:
    k = t.key
    name = ids.TriggerName(org=org, project=k.project, domain=k.domain, task_name=k.task_name, name=k.name)
    return ids.TriggerIdentifier(name=name, revision=t.revision)


def _status(t: StoredTrigger) -> tdef.TriggerStatus:
    status = tdef.TriggerStatus(
        deployed_at=_timestamp(t.deployed_at_ns), updated_at=_timestamp(t.updated_at_ns)
    )
    if t.deleted_at_ns is not None:
        status.deleted_at.CopyFrom(_timestamp(t.deleted_at_ns))
    return status


def _timestamp(ns: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(ns)
    return stamp


def _key(name: ids.TriggerName) -> TriggerKey:
    return TriggerKey(name.project, name.domain, name.task_name, name.name)


def _shown(name: ids.TriggerName) -> str:
    return "/".join(p for p in (name.project, name.domain, name.task_name, name.name) if p)
