"""flyteidl2 `ClusterService` of the embedded control plane: one plane, no data-plane clusters.

The flyte SDK asks `SelectCluster` where to send data-proxy calls (uploads) before making them; an
empty `cluster_endpoint` means "this control plane serves them itself", so the SDK reuses its own
connection (controlplane.py, `_select_and_build_with_cluster`). Our client does the same.
"""

from __future__ import annotations

from typing import Any

from connectrpc.request import RequestContext
from flyteidl2.cluster import payload_pb2
from flyteidl2.cluster.service_connect import ClusterServiceSync


class ClusterService(ClusterServiceSync):  # type: ignore[misc]
    def select_cluster(
        self, request: payload_pb2.SelectClusterRequest, ctx: RequestContext[Any, Any]
    ) -> payload_pb2.SelectClusterResponse:
        return payload_pb2.SelectClusterResponse(cluster_endpoint="", cluster="")
