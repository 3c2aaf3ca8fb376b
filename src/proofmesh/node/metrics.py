"""Prometheus metrics of one node daemon (``GET /metrics``, text exposition format).

Request counters and latencies are updated by middleware; chain and service figures
are read when Prometheus scrapes (a custom collector), so they are never stale and
cost nothing between scrapes.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from proofmesh.http_limits import REFUSALS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StateCollector(Collector):
    """Reads the daemon's live state at scrape time."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        s = self.snapshot()
        yield _gauge("proofmesh_chain_head_block", "Latest block the node has indexed.", s.get("head", -1))
        c = CounterMetricFamily("proofmesh_chain_transactions_seen",
                                "Transactions in blocks mined while this node was running.")
        c.add_metric([], s.get("transactions", 0))
        yield c
        e = CounterMetricFamily("proofmesh_chain_events_indexed", "Contract events the node has indexed.")
        e.add_metric([], s.get("events", 0))
        yield e
        yield _gauge("proofmesh_node_stake_wei", "This node's stake in NodeRegistry (wei).", s.get("stake", 0))
        yield _gauge("proofmesh_node_roles", "This node's NodeRegistry role bitmask.", s.get("roles", 0))
        yield _gauge("proofmesh_store_blobs", "Blobs in this node's store.", s.get("blobs", 0))
        yield _gauge("proofmesh_store_bytes", "Bytes in this node's store.", s.get("store_bytes", 0))
        up = GaugeMetricFamily("proofmesh_service_up", "1 if the service started and is running.", labels=["service"])
        per: dict[str, GaugeMetricFamily] = {}
        for name, info in sorted(s.get("services", {}).items()):
            up.add_metric([name], 1.0 if info.get("up") else 0.0)
            for metric, value in sorted(info.get("metrics", {}).items()):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue  # e.g. the "error" a failing metrics() call is reported as
                fam = per.setdefault(metric, GaugeMetricFamily(f"proofmesh_service_{_safe(metric)}",
                                                               f"Service gauge {metric}.", labels=["service"]))
                fam.add_metric([name], float(value))
        yield up
        yield from per.values()


class NodeMetrics:
    """The registry ``/metrics`` renders."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        # *_created series double the output and no dashboard uses them
        disable_created_metrics()
        self.registry = CollectorRegistry()
        self.requests = Counter("proofmesh_http_requests", "HTTP requests served.", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("proofmesh_http_request_seconds", "HTTP request latency.", ["route"],
                                 registry=self.registry,
                                 buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.rpc_calls = Counter("proofmesh_rpc_calls", "JSON-RPC calls served for the embedded chain.", ["method"],
                                 registry=self.registry)
        # Refused before any route saw them (BodyLimit, the guarded protocol), so absent from
        # proofmesh_http_requests: a flood of 413s or dripping clients shows here.
        self.refused = Counter("proofmesh_http_refused",
                               "HTTP requests refused by the request limits, by reason: body_too_large (413), "
                               "body_timeout, body_too_slow, headers_timeout (408).", ["reason"],
                               registry=self.registry)
        for reason in REFUSALS:
            self.refused.labels(reason)      # exported at 0 from the start: a dashboard sees the series
        self.registry.register(_StateCollector(snapshot))

    def rpc_call(self, method: str) -> None:
        # unknown method names are folded so a client cannot blow up label cardinality
        self.rpc_calls.labels(method if method.isidentifier() and len(method) < 48 else "other").inc()

    def refuse(self, reason: str) -> None:
        """Count one request refused by the limits (``reason``: one of http_limits.REFUSALS)."""
        self.refused.labels(reason if reason in REFUSALS else "other").inc()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc)
    g.add_metric([], float(value))
    return g


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name).lower()
