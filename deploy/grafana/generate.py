#!/usr/bin/env python3
"""Writes LogiCore's Grafana dashboards (deploy/grafana/dashboards/*.json).

The dashboards are generated rather than hand-edited JSON so that every panel is built the same way (the
datasource variable, units, legends, layout) and a reviewer reads a page of queries instead of thousands of
lines of panel boilerplate. deploy/check.sh regenerates them and fails when the committed files differ, so
edit this file and run it:

    python3 deploy/grafana/generate.py

Every metric is one LogiCore serves (deploy/check/metrics.tsv lists them with where the code registers
them). Every LogiCore series carries a `service` label (gateway, users, inventory, orders) set by the
process itself; `job` and `instance` come from Prometheus (`logicore-<service>` jobs).

The business dashboard reads the orders and inventory services' own metrics (orders_*, inventory_*), counted
where the change happens and only once it committed; see docs/observability.md ("Business metrics").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SERVICE = 'service=~"$service"'


class Board:
    """A dashboard under construction: panels are laid out left to right, 24 grid units per row."""

    def __init__(self, uid: str, title: str, description: str, tags: list[str]):
        self.uid, self.title, self.description, self.tags = uid, title, description, tags
        self.panels: list[dict] = []
        self.x = self.y = self.row_height = 0
        self.variables = [datasource_variable()]

    def _place(self, width: int, height: int) -> dict:
        if self.x + width > 24:
            self.x, self.y = 0, self.y + self.row_height
            self.row_height = 0
        pos = {"x": self.x, "y": self.y, "w": width, "h": height}
        self.x += width
        self.row_height = max(self.row_height, height)
        return pos

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y = 0, self.y + self.row_height
        self.row_height = 0
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1},
                "panels": [],
            }
        )
        self.y += 1

    def timeseries(self, title: str, description: str, targets: list[tuple[str, str]], unit: str,
                   width: int = 12, height: int = 8, stack: bool = False, exemplars: bool = False,
                   thresholds: list[tuple[float, str]] | None = None) -> None:
        custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if stack else 0, "showPoints": "never",
                  "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
        field = {"unit": unit, "custom": custom}
        if thresholds:
            field["thresholds"] = threshold_steps(thresholds)
            custom["thresholdsStyle"] = {"mode": "line"}
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "timeseries",
                "title": title,
                "description": description,
                "datasource": DATASOURCE,
                "gridPos": self._place(width, height),
                "fieldConfig": {"defaults": field, "overrides": []},
                "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
                            "tooltip": {"mode": "multi", "sort": "desc"}},
                "targets": [target(i, expr, legend, exemplar=exemplars) for i, (expr, legend) in enumerate(targets)],
            }
        )

    def stat(self, title: str, description: str, expr: str, legend: str, unit: str,
             thresholds: list[tuple[float, str]], width: int = 6, height: int = 4) -> None:
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "stat",
                "title": title,
                "description": description,
                "datasource": DATASOURCE,
                "gridPos": self._place(width, height),
                "fieldConfig": {"defaults": {"unit": unit, "thresholds": threshold_steps(thresholds)},
                                "overrides": []},
                "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                            "colorMode": "background", "graphMode": "area", "textMode": "auto"},
                "targets": [target(0, expr, legend, instant=True)],
            }
        )

    def table(self, title: str, description: str, targets: list[tuple[str, str]], unit: str,
              width: int = 24, height: int = 10) -> None:
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "table",
                "title": title,
                "description": description,
                "datasource": DATASOURCE,
                "gridPos": self._place(width, height),
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"showHeader": True, "sortBy": [{"displayName": "Value #A", "desc": True}]},
                "transformations": [{"id": "merge", "options": {}},
                                    {"id": "organize", "options": {"excludeByName": {"Time": True}}}],
                "targets": [target(i, expr, legend, instant=True, table=True)
                            for i, (expr, legend) in enumerate(targets)],
            }
        )

    def service_variable(self, metric: str) -> None:
        self.variables.append(
            {
                "type": "query",
                "name": "service",
                "label": "service",
                "datasource": DATASOURCE,
                "query": {"query": f"label_values({metric}, service)", "refId": "service"},
                "definition": f"label_values({metric}, service)",
                "refresh": 2,
                "includeAll": True,
                "multi": True,
                "allValue": ".+",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "sort": 1,
            }
        )

    def json(self) -> dict:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["logicore", *self.tags],
            "timezone": "browser",
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": 39,
            "version": 1,
            "refresh": "30s",
            "time": {"from": "now-3h", "to": "now"},
            "templating": {"list": self.variables},
            "annotations": {"list": [{
                "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
                "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
                "type": "dashboard"}]},
            "links": [{"title": "LogiCore dashboards", "type": "dashboards", "tags": ["logicore"],
                       "asDropdown": True}],
            "panels": self.panels,
        }


def datasource_variable() -> dict:
    # A variable rather than a fixed uid: the compose provisioning names its datasource `prometheus`, a
    # Kubernetes Grafana usually has its own; the dashboards follow whichever Prometheus is picked.
    return {"type": "datasource", "name": "datasource", "label": "Prometheus", "query": "prometheus",
            "current": {}, "hide": 0, "refresh": 1, "regex": "", "includeAll": False, "multi": False}


def target(index: int, expr: str, legend: str, *, instant: bool = False, table: bool = False,
           exemplar: bool = False) -> dict:
    t = {"refId": chr(ord("A") + index), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend,
         "range": not instant, "instant": instant}
    if table:
        t["format"] = "table"
    if exemplar:
        t["exemplar"] = True
    return t


def threshold_steps(steps: list[tuple[float, str]]) -> dict:
    return {"mode": "absolute",
            "steps": [{"color": "green", "value": None}, *({"color": c, "value": v} for v, c in steps)]}


def quantile(q: float, metric: str, by: str, selector: str = SERVICE) -> str:
    return (f"histogram_quantile({q}, sum by ({by}, le) "
            f"(rate({metric}_bucket{{{selector}}}[$__rate_interval])))")


def overview() -> Board:
    b = Board("logicore-overview", "LogiCore / Platform overview",
              "Rate, errors and duration (RED) per service and per route, the latency SLO, instances.",
              ["overview"])
    b.service_variable("http_requests_total")
    b.row("Latency SLO: 99 % of gateway API requests within 500 ms")
    b.stat("Slow requests, last hour", "Share of gateway /api requests slower than 500 ms (budget: 1 %).",
           "slo:gateway_api_requests_slow:ratio_rate1h", "slow", "percentunit", [(0.01, "orange"), (0.144, "red")])
    b.stat("Burn rate, 1 h", "How many times faster than allowed the error budget is spent (1 = on budget).",
           "slo:gateway_api_requests_slow:ratio_rate1h / 0.01", "burn", "none", [(1, "orange"), (14.4, "red")])
    b.stat("Burn rate, 6 h", "Over 6 x pages together with the 30 m window (LogicoreLatencySLOBudgetBurnFast).",
           "slo:gateway_api_requests_slow:ratio_rate6h / 0.01", "burn", "none", [(1, "orange"), (6, "red")])
    b.stat("Burn rate, 3 d", "Over 1 x for 3 days spends the 30-day budget early (LogicoreLatencySLOBudgetBurnSlow).",
           "slo:gateway_api_requests_slow:ratio_rate3d / 0.01", "burn", "none", [(1, "red")])

    b.row("Services")
    b.timeseries("Requests per second", "All HTTP requests each service handled.",
                 [(f"sum by (service) (rate(http_requests_total{{{SERVICE}}}[$__rate_interval]))", "{{service}}")],
                 "reqps", width=8)
    b.timeseries("Server errors (5xx share)", "Share of responses with a 5xx status; alert LogicoreHigh5xxRatio above 5 %.",
                 # `or … * 0`: a service without a single 5xx has no 5xx series; show 0 for it, not "No data".
                 [(f"(sum by (service) (rate(http_requests_total{{{SERVICE},status=~\"5..\"}}[$__rate_interval]))"
                   f" or sum by (service) (rate(http_requests_total{{{SERVICE}}}[$__rate_interval])) * 0)"
                   f" / sum by (service) (rate(http_requests_total{{{SERVICE}}}[$__rate_interval]))", "{{service}}")],
                 "percentunit", width=8, thresholds=[(0.05, "red")])
    b.timeseries("Client errors (4xx per second)", "Validation failures, 401/403, 404, 409, 429 by service.",
                 [(f"sum by (service, status) (rate(http_requests_total{{{SERVICE},status=~\"4..\"}}[$__rate_interval]))",
                   "{{service}} {{status}}")],
                 "reqps", width=8)
    b.timeseries("Latency p50 / p99", "Request duration by service; click an exemplar to open its trace.",
                 [(quantile(0.5, "http_request_duration_seconds", "service"), "p50 {{service}}"),
                  (quantile(0.99, "http_request_duration_seconds", "service"), "p99 {{service}}")],
                 "s", exemplars=True)
    b.timeseries("Requests in flight", "Requests being handled right now, summed over instances.",
                 [(f"sum by (service) (http_requests_in_flight{{{SERVICE}}})", "{{service}}")], "short")

    b.row("Routes")
    b.table("Routes: rate, 5xx share and p99", "Per route of the selected services, over the last 5 minutes.",
            [(f"sum by (service, method, route) (rate(http_requests_total{{{SERVICE}}}[5m]))", "req/s"),
             (f"(sum by (service, method, route) (rate(http_requests_total{{{SERVICE},status=~\"5..\"}}[5m]))"
              f" or sum by (service, method, route) (rate(http_requests_total{{{SERVICE}}}[5m])) * 0)"
              f" / sum by (service, method, route) (rate(http_requests_total{{{SERVICE}}}[5m]))", "5xx share"),
             (f"histogram_quantile(0.99, sum by (service, method, route, le) "
              f"(rate(http_request_duration_seconds_bucket{{{SERVICE}}}[5m])))", "p99 s")],
            "short")
    b.timeseries("Requests per second by route", "",
                 [(f"sum by (service, method, route) (rate(http_requests_total{{{SERVICE}}}[$__rate_interval]))",
                   "{{service}} {{method}} {{route}}")], "reqps")
    b.timeseries("p99 latency by route", "",
                 [(quantile(0.99, "http_request_duration_seconds", "service, method, route"),
                   "{{service}} {{method}} {{route}}")], "s")

    b.row("Instances and processes")
    b.timeseries("Instances up", "Targets Prometheus scrapes successfully, per job (LogicoreInstanceDown).",
                 [('sum by (job) (up{job=~"logicore-.+"})', "{{job}}")], "short", width=8)
    b.timeseries("CPU per instance", "",
                 [(f"rate(process_cpu_seconds_total{{{SERVICE}}}[$__rate_interval])", "{{service}} {{instance}}")],
                 "percentunit", width=8)
    b.timeseries("Resident memory per instance", "",
                 [(f"process_resident_memory_bytes{{{SERVICE}}}", "{{service}} {{instance}}")], "bytes", width=8)
    b.timeseries("Trace export", "Spans handed to the OTLP collector, dropped (queue full) and failed batches.",
                 [(f"sum by (service) (rate(trace_spans_exported_total{{{SERVICE}}}[$__rate_interval]))", "exported {{service}}"),
                  (f"sum by (service) (rate(trace_spans_dropped_total{{{SERVICE}}}[$__rate_interval]))", "dropped {{service}}"),
                  (f"sum by (service) (rate(trace_export_failures_total{{{SERVICE}}}[$__rate_interval]))", "failed batches {{service}}")],
                 "ops", width=24)
    return b


def gateway() -> Board:
    b = Board("logicore-gateway", "LogiCore / Gateway",
              "Circuit breakers, rate limiter, retries, outlier ejections, upstream latency and discovery.",
              ["gateway"])
    up = 'service="gateway"'
    b.row("Circuit breakers")
    b.timeseries("Breaker state", "0 closed, 1 open, 2 half-open, per upstream and gateway instance "
                 "(LogicoreCircuitBreakerOpen when not closed for a minute).",
                 [(f"max by (upstream, instance) (circuit_breaker_state{{{up}}})", "{{upstream}} {{instance}}")],
                 "short", width=8, thresholds=[(1, "red")])
    b.timeseries("Breaker transitions", "State changes per upstream, by the state entered.",
                 [(f"sum by (upstream, to) (increase(circuit_breaker_transitions_total{{{up}}}[$__rate_interval]))",
                   "{{upstream}} → {{to}}")], "short", width=8)
    b.timeseries("Refused by an open breaker", "Calls answered 503 without being sent.",
                 [(f"sum by (upstream) (rate(circuit_breaker_rejections_total{{{up}}}[$__rate_interval]))",
                   "{{upstream}}")], "reqps", width=8)

    b.row("Rate limiter")
    b.timeseries("Decisions", "allowed, limited (429), and fail_open / fail_closed when Redis did not answer in time.",
                 [(f"sum by (decision) (rate(gateway_rate_limit_decisions_total{{{up}}}[$__rate_interval]))",
                   "{{decision}}")], "reqps", stack=True)
    b.timeseries("Refused share", "limited / all decisions (LogicoreRateLimitRejectionsSpiking above 10 %).",
                 [(f"sum(rate(gateway_rate_limit_decisions_total{{{up},decision=\"limited\"}}[$__rate_interval]))"
                   f" / sum(rate(gateway_rate_limit_decisions_total{{{up}}}[$__rate_interval]))", "limited")],
                 "percentunit", thresholds=[(0.1, "red")])

    b.row("Upstreams")
    b.timeseries("Upstream attempts by status class", "Every attempt, retries included; connect_error and timeout "
                 "are attempts without a response.",
                 [(f"sum by (upstream, status_class) (rate(gateway_upstream_requests_total{{{up}}}[$__rate_interval]))",
                   "{{upstream}} {{status_class}}")], "reqps")
    b.timeseries("Upstream latency p50 / p99", "Time to the upstream's response head.",
                 [(quantile(0.5, "gateway_upstream_request_duration_seconds", "upstream", up), "p50 {{upstream}}"),
                  (quantile(0.99, "gateway_upstream_request_duration_seconds", "upstream", up), "p99 {{upstream}}")],
                 "s")
    b.timeseries("Retries", "Attempts repeated, by why the previous one failed.",
                 [(f"sum by (upstream, reason) (rate(gateway_upstream_retries_total{{{up}}}[$__rate_interval]))",
                   "{{upstream}} {{reason}}")], "ops", width=8)
    b.timeseries("Retries refused by the budget", "Retries not made because the retry budget was spent.",
                 [(f"sum by (upstream, reason) (rate(gateway_upstream_retry_budget_exhausted_total{{{up}}}[$__rate_interval]))",
                   "{{upstream}} {{reason}}")], "ops", width=8)
    b.timeseries("Outlier ejections", "Instances taken out of rotation after consecutive failures.",
                 [(f"sum by (upstream, endpoint) (increase(gateway_upstream_ejections_total{{{up}}}[$__rate_interval]))",
                   "{{upstream}} {{endpoint}}")], "short", width=8)

    b.row("Service discovery")
    b.timeseries("Endpoints per upstream", "Instances the gateway currently routes to.",
                 [(f"max by (upstream, backend) (discovery_endpoints{{{up}}})", "{{upstream}} ({{backend}})")],
                 "short", width=8)
    b.timeseries("Serving a stale set", "1 while the registry cannot be read and the last known set is used.",
                 [(f"max by (upstream) (discovery_stale{{{up}}})", "{{upstream}}")], "short", width=8,
                 thresholds=[(1, "orange")])
    b.timeseries("Watch updates and errors", "",
                 [(f"sum by (upstream) (rate(discovery_watch_updates_total{{{up}}}[$__rate_interval]))", "updates {{upstream}}"),
                  (f"sum by (upstream) (rate(discovery_watch_errors_total{{{up}}}[$__rate_interval]))", "errors {{upstream}}")],
                 "ops", width=8)
    return b


def events() -> Board:
    b = Board("logicore-events", "LogiCore / Events",
              "Transactional outbox, relay, consumers, retries, dead letters and the broker.", ["events"])
    b.service_variable("messaging_outbox_pending")
    b.row("Outbox and relay")
    b.timeseries("Outbox lag", "Age of the oldest event not yet relayed (LogicoreOutboxLag above 60 s).",
                 [(f"max by (service) (messaging_outbox_lag_seconds{{{SERVICE}}})", "{{service}}")], "s", width=8,
                 thresholds=[(60, "red")])
    b.timeseries("Unsent events", "Events in the outbox not yet relayed (the same number from every replica).",
                 [(f"max by (service) (messaging_outbox_pending{{{SERVICE}}})", "{{service}}")], "short", width=8)
    b.timeseries("Broker reachable", "1 reachable, 0 down (breaker open): events wait in the outbox.",
                 [(f"min by (service) (messaging_broker_up{{{SERVICE}}})", "{{service}}")], "short", width=8)
    b.timeseries("Written and relayed per second", "Events written to the outbox and confirmed by the transport.",
                 [(f"sum by (service) (rate(messaging_events_published_total{{{SERVICE}}}[$__rate_interval]))", "written {{service}}"),
                  (f"sum by (service) (rate(messaging_events_relayed_total{{{SERVICE}}}[$__rate_interval]))", "relayed {{service}}")],
                 "ops")
    b.timeseries("Relay failures", "Relay passes that failed and will be retried.",
                 [(f"sum by (service) (rate(messaging_relay_failures_total{{{SERVICE}}}[$__rate_interval]))", "{{service}}")],
                 "ops")

    b.row("Consumers")
    b.timeseries("Handled per second", "Events handled successfully, by consumer group.",
                 [(f"sum by (group) (rate(messaging_events_consumed_total{{{SERVICE}}}[$__rate_interval]))", "{{group}}")],
                 "ops", width=8)
    b.timeseries("Handler duration p50 / p99", "Inbox check, handling and commit of one delivery.",
                 [(quantile(0.5, "messaging_handler_duration_seconds", "group"), "p50 {{group}}"),
                  (quantile(0.99, "messaging_handler_duration_seconds", "group"), "p99 {{group}}")], "s", width=8)
    b.timeseries("Queue depth", "Deliveries waiting per consumer group (LogicoreConsumerLag above 1000).",
                 [(f"max by (group) (messaging_queue_depth{{{SERVICE}}})", "{{group}}")], "short", width=8,
                 thresholds=[(1000, "orange")])
    b.timeseries("Retries and duplicates", "Deliveries scheduled for another attempt; redeliveries the inbox skipped.",
                 [(f"sum by (group) (rate(messaging_events_retried_total{{{SERVICE}}}[$__rate_interval]))", "retried {{group}}"),
                  (f"sum by (group) (rate(messaging_events_duplicates_total{{{SERVICE}}}[$__rate_interval]))", "duplicate {{group}}")],
                 "ops")
    b.timeseries("Dead letters", "Deliveries moved aside after messaging.max_attempts (LogicoreDeadLettersGrowing). "
                 "Inspect with `logicore events dead-letters list --group G`.",
                 [(f"sum by (group) (increase(messaging_events_dead_lettered_total{{{SERVICE}}}[$__rate_interval]))", "{{group}}")],
                 "short", thresholds=[(1, "red")])
    return b


def database_cache() -> Board:
    b = Board("logicore-database-cache", "LogiCore / Database and cache",
              "PostgreSQL pools and query latency per service; the cache's hits, misses and errors.",
              ["database", "cache"])
    b.service_variable("db_pool_max_connections")
    b.row("Database pools")
    b.timeseries("Pool in use", "Connections in use over the pool's maximum, per process "
                 "(LogicoreDatabasePoolSaturated at 90 % with waiters).",
                 [(f"max by (service, instance) ((db_pool_connections{{{SERVICE}}} - db_pool_idle_connections{{{SERVICE}}})"
                   f" / db_pool_max_connections{{{SERVICE}}})", "{{service}} {{instance}}")],
                 "percentunit", width=8, thresholds=[(0.9, "red")])
    b.timeseries("Waiting for a connection", "Tasks queued for a pooled connection; past database.acquire_timeout_ms "
                 "they are answered 503.",
                 [(f"max by (service, instance) (db_pool_waiting{{{SERVICE}}})", "{{service}} {{instance}}")],
                 "short", width=8)
    b.timeseries("Connections", "Open and idle connections, and the pool's maximum, summed over instances.",
                 [(f"sum by (service) (db_pool_connections{{{SERVICE}}})", "open {{service}}"),
                  (f"sum by (service) (db_pool_idle_connections{{{SERVICE}}})", "idle {{service}}"),
                  (f"sum by (service) (db_pool_max_connections{{{SERVICE}}})", "max {{service}}")],
                 "short", width=8)

    b.row("Queries")
    b.timeseries("Query p99 (top 10)", "The ten slowest statements by p99 (statements over database.slow_query_ms "
                 "are also logged).",
                 [(f"topk(10, {quantile(0.99, 'db_query_duration_seconds', 'service, query')})", "{{service}} {{query}}")],
                 "s")
    b.timeseries("Queries per second (top 10)", "",
                 [(f"topk(10, sum by (service, query) (rate(db_query_duration_seconds_count{{{SERVICE}}}[$__rate_interval])))",
                   "{{service}} {{query}}")], "ops")

    b.row("Cache")
    b.timeseries("Reads", "Hits (near-cache hits are also hits), misses.",
                 [(f"sum by (service) (rate(cache_hits_total{{{SERVICE}}}[$__rate_interval]))", "hits {{service}}"),
                  (f"sum by (service) (rate(cache_near_hits_total{{{SERVICE}}}[$__rate_interval]))", "near hits {{service}}"),
                  (f"sum by (service) (rate(cache_misses_total{{{SERVICE}}}[$__rate_interval]))", "misses {{service}}")],
                 "ops", width=8)
    b.timeseries("Hit ratio", "hits / (hits + misses) over the interval.",
                 [(f"sum by (service) (rate(cache_hits_total{{{SERVICE}}}[$__rate_interval]))"
                   f" / (sum by (service) (rate(cache_hits_total{{{SERVICE}}}[$__rate_interval]))"
                   f" + sum by (service) (rate(cache_misses_total{{{SERVICE}}}[$__rate_interval])))", "{{service}}")],
                 "percentunit", width=8)
    b.timeseries("Errors", "Failed cache operations; the request carried on without the cache (LogicoreCacheDegraded "
                 "above 5 %).",
                 [(f"sum by (service) (rate(cache_errors_total{{{SERVICE}}}[$__rate_interval]))", "errors {{service}}"),
                  ("service:cache_errors:ratio_rate5m", "error share {{service}}")],
                 "short", width=8)
    b.timeseries("Writes and invalidations", "",
                 [(f"sum by (service) (rate(cache_sets_total{{{SERVICE}}}[$__rate_interval]))", "sets {{service}}"),
                  (f"sum by (service) (rate(cache_deletes_total{{{SERVICE}}}[$__rate_interval]))", "deletes {{service}}")],
                 "ops", width=24)
    return b


def business() -> Board:
    b = Board("logicore-business", "LogiCore / Business",
              "Orders and what becomes of them, the saga's confirmation latency, reservations and shortages, "
              "stock below reorder point by warehouse, imports, shipments and deliveries.", ["business"])
    # Every series here is counted by one service (orders_* by orders, inventory_* by inventory), each replica
    # its own share: sums add the replicas up. The low-stock gauge is read from the shared database by every
    # inventory replica, so it is `max`, not `sum`. Rates are shown per minute.
    per_min = "[$__rate_interval])) * 60"
    outcomes = 'to=~"confirmed|rejected|cancelled|expired"'
    b.row("Orders")
    b.stat("Orders created", "Orders placed over the dashboard's time range.",
           "sum(increase(orders_created_total[$__range]))", "orders", "short", [], width=6)
    b.stat("Rejected share", "Rejected / (confirmed + rejected) over the time range: orders inventory could not "
           "cover.", 'sum(increase(orders_status_changes_total{to="rejected"}[$__range]))'
           ' / sum(increase(orders_status_changes_total{to=~"confirmed|rejected"}[$__range]))',
           "rejected", "percentunit", [(0.05, "orange"), (0.2, "red")], width=6)
    b.stat("Expired share", "Expired / created over the time range: orders the saga answered too late (or never).",
           'sum(increase(orders_status_changes_total{to="expired"}[$__range]))'
           " / sum(increase(orders_created_total[$__range]))",
           "expired", "percentunit", [(0.01, "orange"), (0.05, "red")], width=6)
    b.stat("Confirmation p99", "Create → confirmed latency over the last 5 minutes.",
           "histogram_quantile(0.99, sum by (le) (rate(orders_confirmation_duration_seconds_bucket[5m])))",
           "p99", "s", [(5, "orange"), (60, "red")], width=6)
    b.timeseries("Orders created and their outcomes", "Created, and the statuses the saga, customers, staff and "
                 "the expiry sweeper moved them to.",
                 [(f"sum(rate(orders_created_total{per_min}", "created"),
                  (f"sum by (to) (rate(orders_status_changes_total{{{outcomes}}}{per_min}", "{{to}}")],
                 "opm")
    b.timeseries("Create → confirmed latency", "From the order's creation to its confirmation: the saga's round "
                 "trip through the broker and inventory.",
                 [(quantile(0.5, "orders_confirmation_duration_seconds", "service", 'service="orders"'), "p50"),
                  (quantile(0.9, "orders_confirmation_duration_seconds", "service", 'service="orders"'), "p90"),
                  (quantile(0.99, "orders_confirmation_duration_seconds", "service", 'service="orders"'), "p99")], "s")

    b.row("Stock")
    b.timeseries("Reservations", "Reservations made, and refused for lack of stock (from the saga and the API).",
                 [(f"sum by (outcome) (rate(inventory_reservations_total{per_min}", "{{outcome}}")], "opm", width=8)
    b.timeseries("Reserved units by warehouse", "Units the new reservations hold, by the warehouse holding them "
                 "(ids: GET /api/v1/inventory/warehouses).",
                 [(f"sum by (warehouse_id) (rate(inventory_reserved_units_total{per_min}", "{{warehouse_id}}")],
                 "opm", width=8)
    b.timeseries("Short lines", "Order lines stock could not cover. Short across every active warehouse, so "
                 "they carry no warehouse.",
                 [(f"sum(rate(inventory_reservation_short_lines_total{per_min}", "short lines")], "opm", width=8)
    b.timeseries("Stock below reorder point", "Products at or below their reorder point, per warehouse, as read "
                 "from the database (inventory.stock_gauge_interval_ms).",
                 [("max by (warehouse_id) (inventory_stock_below_reorder_point)", "{{warehouse_id}}")],
                 "short", width=12)
    b.timeseries("Import rows", "CSV import rows applied, and rejected with a row error.",
                 [(f"sum by (result) (rate(inventory_import_rows_total{per_min}", "{{result}}")], "opm", width=12)

    b.row("Shipments and deliveries")
    b.timeseries("Shipments by status", "Shipments created (pending) and the statuses they moved to.",
                 [(f"sum by (to) (rate(orders_shipment_status_changes_total{per_min}", "{{to}}")], "opm")
    b.timeseries("Deliveries with and without proof", "Delivered shipments, by whether a proof of delivery "
                 "was on record.",
                 [(f"sum by (proof) (rate(orders_deliveries_total{per_min}", "{{proof}} proof")], "opm")
    return b


BOARDS = {"overview.json": overview, "gateway.json": gateway, "events.json": events,
          "database-cache.json": database_cache, "business.json": business}


def render() -> dict[str, str]:
    return {name: json.dumps(build().json(), indent=2, ensure_ascii=False) + "\n" for name, build in BOARDS.items()}


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for name, text in render().items():
        path = OUT / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print("dashboards differ from what deploy/grafana/generate.py makes (edit generate.py and run it): "
              + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
