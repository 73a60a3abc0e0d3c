#!/usr/bin/env python3
"""Writes the LLMChat Grafana dashboards (dashboards/*.json) from the
panel lists below, so that layout, units, descriptions and variables stay
uniform. Standard library only.

    python3 dashboards/generate.py          # rewrite the JSON files
    python3 dashboards/generate.py --check  # exit 1 if they are out of date

The end-to-end test (tests/tests/stack.rs) runs every panel's query
against a real Prometheus that scraped the real exporter and receiver.
"""

import glob
import json
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA_VERSION = 39  # Grafana 11
DS = {"type": "prometheus", "uid": "${datasource}"}
# Exporter series of the selected job and instance.
SEL = 'job=~"$job", instance=~"$instance"'
# Receiver series of the selected receiver instance.
RSEL = SEL
RI = "$__rate_interval"


def target(expr, legend, ref):
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


def panel(kind, title, description, unit, targets, w=12, h=8, **extra):
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [target(e, l, chr(ord("A") + i)) for i, (e, l) in enumerate(targets)],
    }
    d = p["fieldConfig"]["defaults"]
    if kind == "timeseries":
        d["custom"] = {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
        p["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
    elif kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "background", "graphMode": "none"}
    thresholds = extra.pop("thresholds", None)
    # Green below the first step, unless less is worse (days left).
    base = extra.pop("threshold_base", "green")
    if thresholds:
        d["thresholds"] = {"mode": "absolute",
                           "steps": [{"color": base, "value": None}] + [{"color": c, "value": v} for v, c in thresholds]}
        if kind == "timeseries":
            # Drawn: the alert's threshold as a line across the graph.
            d["custom"]["thresholdsStyle"] = {"mode": "line"}
    mappings = extra.pop("mappings", None)
    if mappings:
        d["mappings"] = [{"type": "value", "options": {str(k): {"text": t, "color": c} for k, t, c in mappings}}]
    for k in ("min", "max"):
        if k in extra:
            d[k] = extra.pop(k)
    p.update(extra)
    return p


UPDOWN = [(0, "down", "red"), (1, "up", "green")]


def variables(receiver=False):
    ds = {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
          "current": {}, "hide": 0, "refresh": 1}
    # ".*": "All" also matches series without the label (alerts without an
    # instance, the Watchdog without a job).
    def query_var(name, label, query, all_value=".*"):
        return {"name": name, "label": label, "type": "query", "datasource": DS,
                "query": {"query": query, "refId": name},
                "refresh": 2, "includeAll": True, "multi": True, "allValue": all_value,
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "sort": 1, "hide": 0}
    if receiver:
        return [ds,
                # The receivers and the Alertmanagers: the alert pipeline.
                query_var("job", "Job", 'label_values(up{job=~"llmchat-receiver|alertmanager"}, job)'),
                query_var("instance", "Instance", 'label_values(up{job=~"$job"}, instance)', all_value=".*")]
    return [ds,
            query_var("job", "Job", "label_values(llmchat_exporter_build_info, job)"),
            # ".*": "All" also matches series without an instance (the
            # fleet alerts in ALERTS).
            query_var("instance", "Instance", 'label_values(llmchat_exporter_build_info{job=~"$job"}, instance)', all_value=".*")]


def alerts_of(uid):
    """The alerts whose `dashboard` annotation names this dashboard, read
    from the alert rule files as YAML (PyYAML: Debian's python3-yaml); by
    name, so moving a rule between files changes no query."""
    found = set()
    for path in sorted(glob.glob(os.path.join(HERE, "..", "rules", "*.alerts.rules.yml"))):
        with open(path, encoding="utf-8") as f:
            rules = yaml.safe_load(f)
        found.update(r["alert"] for g in rules["groups"] for r in g["rules"]
                     if r.get("annotations", {}).get("dashboard") == uid)
    return sorted(found)


# Panel ids are kept in panel-ids.yml, per dashboard and title, not taken
# from a panel's position: alerts link to panels by id (`dashboard_panel`),
# so inserting or moving a panel must not repoint them. A new title gets
# the dashboard's next unused id; a removed one's id is never reused.
PANEL_IDS_FILE = os.path.join(HERE, "panel-ids.yml")
with open(PANEL_IDS_FILE, encoding="utf-8") as _f:
    PANEL_IDS_HEADER = "".join(line for line in _f if line.startswith("#"))
    _f.seek(0)
    PANEL_IDS = yaml.safe_load(_f)
NEW_PANEL_IDS = []


def panel_id(uid, title):
    ids = PANEL_IDS.setdefault(uid, {})
    if title not in ids:
        ids[title] = max(ids.values(), default=0) + 1
        NEW_PANEL_IDS.append(f"{uid}: {title}")
    return ids[title]


def dashboard(uid, title, description, panels, receiver=False, annotations=()):
    sel = RSEL if receiver else SEL
    panels = panels + [panel(
        "timeseries", "Alerts firing", "The alerts whose dashboard is this one, while they fire (each alert's `dashboard` annotation links here).",
        "short", [(f'sum by (alertname, severity) (ALERTS{{alertstate="firing", alertname=~"{"|".join(alerts_of(uid))}", {sel}}})', "{{alertname}} ({{severity}})")],
        w=24)]
    x = y = 0
    row_h = 0
    for i, p in enumerate(panels):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["gridPos"].update({"x": x, "y": y})
        p["id"] = panel_id(uid, p["title"])
        x += w
        row_h = max(row_h, h)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["llmchat"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables(receiver)},
        # Grafana adds its built-in "Annotations & Alerts" itself; the
        # schema (dashboards/schema-check.py) has no `builtIn` to mark it.
        "annotations": {"list": list(annotations)},
        "links": [{"title": "LLMChat", "type": "dashboards", "tags": ["llmchat"], "asDropdown": True}],
        "panels": panels,
    }


HTTP = f"llmchat_http_requests_total{{{SEL}}}"

overview = dashboard("llmchat-overview", "LLMChat / Overview",
    "Traffic, errors, latency, chat and health of LLMChat at a glance.", [
    panel("timeseries", "Request rate by status", "HTTP requests per second from nginx's access log, by status code.",
          "reqps", [(f"sum by (status_code) (rate({HTTP}[{RI}]))", "{{status_code}}")]),
    panel("timeseries", "Error ratios", "Share of requests answered 5xx (the guide's errorRate, alert at 5%) and with any status >= 400 (the monthly report's error rate, target 1%).",
          "percentunit", [
              (f'sum(rate(llmchat_http_requests_total{{{SEL}, status_code=~"5.."}}[{RI}])) / sum(rate({HTTP}[{RI}]))', "5xx"),
              (f'sum(rate(llmchat_http_requests_total{{{SEL}, status_code=~"[45].."}}[{RI}])) / sum(rate({HTTP}[{RI}]))', ">= 400"),
          ], min=0, thresholds=[(0.01, "orange"), (0.05, "red")]),
    panel("timeseries", "Latency percentiles", "p50, p95 and p99 of nginx's $request_time, and the mean the guide's responseTime alert watches (above 2 s over 5 minutes).",
          "s", [(f"histogram_quantile({q}, sum by (le) (rate(llmchat_http_request_duration_seconds_bucket{{{SEL}}}[{RI}])))", n)
                for q, n in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"))]
              + [(f"sum(rate(llmchat_http_request_duration_seconds_sum{{{SEL}}}[{RI}])) / sum(rate(llmchat_http_request_duration_seconds_count{{{SEL}}}[{RI}]))", "mean")],
          thresholds=[(0.5, "orange"), (2, "red")]),
    panel("timeseries", "Requests over 2 s", "Share of requests slower than 2 s (the latency SLO allows 1%; LLMChatLatencyBudgetBurn pages at 14.4 times that over an hour).",
          "percentunit", [(f'1 - sum(rate(llmchat_http_request_duration_seconds_bucket{{{SEL}, le="2.0"}}[{RI}])) / sum(rate(llmchat_http_request_duration_seconds_count{{{SEL}}}[{RI}]))', "over 2 s")],
          min=0, thresholds=[(0.01, "orange"), (0.144, "red")]),
    panel("timeseries", "Chat messages by agent and status", "Chat messages per second from the backend's chat_message log events, by agent and success or error.",
          "suffix: msg/s", [(f"sum by (agent_id, status) (rate(llmchat_chat_messages_total{{{SEL}}}[{RI}]))", "{{agent_id}} {{status}}")]),
    panel("stat", "Active sessions", "Chat sessions updated within the exporter's active window (30 minutes by default), from PostgreSQL.",
          "short", [(f"sum(llmchat_active_sessions{{{SEL}}})", "sessions")], w=6),
    panel("stat", "Backend health", "The backend's /health probe: up (answered 2xx) or down, as the daily check's curl -f.",
          "none", [(f"min(llmchat_app_up{{{SEL}}})", "backend")], w=6, mappings=UPDOWN),
    panel("timeseries", "5xx ratio by instance", "Share of each backend instance's requests answered 5xx (LLMChatInstanceHighErrorRate above 5% while the fleet is below).",
          "percentunit", [(f'sum by (instance) (rate(llmchat_http_requests_total{{{SEL}, status_code=~"5.."}}[{RI}])) / sum by (instance) (rate({HTTP}[{RI}]))', "{{instance}}")],
          min=0, thresholds=[(0.05, "red")]),
    panel("timeseries", "Mean latency by instance", "Mean response time of each backend instance (LLMChatInstanceSlowResponses above 2 s).",
          "s", [(f"sum by (instance) (rate(llmchat_http_request_duration_seconds_sum{{{SEL}}}[{RI}])) / sum by (instance) (rate(llmchat_http_request_duration_seconds_count{{{SEL}}}[{RI}]))", "{{instance}}")],
          thresholds=[(2, "red")]),
    panel("timeseries", "Backend up by instance", "Each instance's /health probe (LLMChatInstanceDown for one, LLMChatAppDown for all).",
          "none", [(f"min by (instance) (llmchat_app_up{{{SEL}}})", "{{instance}}")], min=0, max=1),
    panel("timeseries", "Health endpoints", "Each of the backend's health endpoints answering below 400: /health, and the app's own view of PostgreSQL (/health/db) and Redis (/health/redis); LLMChatAppCannotReachDatabase/Redis when the app's view disagrees with the exporter's.",
          "none", [(f"min by (endpoint) (llmchat_app_endpoint_up{{{SEL}}})", "{{endpoint}}")], min=0, max=1),
    panel("timeseries", "Backend health status", "What the backend's /health says: healthy, degraded (fewer than half of its checks fail; LLMChatAppDegraded after 5 minutes) or unhealthy.",
          "none", [(f"max by (status) (llmchat_app_health_status{{{SEL}}})", "{{status}}")], min=0, max=1),
    panel("timeseries", "Exporter and collectors", "Whether Prometheus reaches the exporter (up; LLMChatExporterDown) and whether each collector's last scrape worked (LLMChatCollectorFailing).",
          "none", [(f"min(up{{{SEL}}})", "exporter up"),
                   (f"min by (collector) (llmchat_exporter_collector_success{{{SEL}}})", "{{collector}}")], min=0, max=1),
    panel("timeseries", "Versions", "Backend instances by the version their /health reports (llmchat_app_info; \"unknown\" when it does not match app.version_pattern). Two lines at once is a rollout (LLMChatVersionSkew past 30 minutes); deploys are marked on every graph of this dashboard.",
          "short", [(f"count by (version) (llmchat_app_info{{{SEL}}})", "{{version}}")], min=0),
    panel("timeseries", "Restarts", "New start times of each backend instance in 15 minutes, from its /health uptime: a deploy is one, more than 3 is LLMChatRestartLoop.",
          "short", [(f"changes(llmchat_app_start_time_seconds{{{SEL}}}[15m])", "{{instance}}")], min=0, thresholds=[(3.5, "red")]),
    panel("timeseries", "LLM provider errors", "Share of each LLM provider's calls that failed, by error type (rate_limited, timeout, overloaded, context_length, content_filter, auth, provider_5xx, other), from the chat events; LLMChatProviderDegraded above 10% on one provider while the others answer.",
          "percentunit", [(f"sum by (provider, error_type) (rate(llmchat_chat_provider_errors_total{{{SEL}}}[{RI}])) / on (provider) group_left () sum by (provider) (rate(llmchat_chat_provider_calls_total{{{SEL}}}[{RI}]))", "{{provider}} {{error_type}}")],
          min=0, thresholds=[(0.1, "red")]),
    panel("timeseries", "LLM tokens per second", "Tokens per second by model and type (input, output, cached input), from the chat events' usage.",
          "short", [(f"sum by (model, type) (rate(llmchat_chat_tokens_total{{{SEL}}}[{RI}]))", "{{model}} {{type}}")], min=0),
    panel("timeseries", "Time to first token", "p50 and p95 of the time to the first streamed token by agent (estimated from the histogram's buckets).",
          "s", [(f"histogram_quantile({q}, sum by (agent_id, le) (rate(llmchat_chat_time_to_first_token_seconds_bucket{{{SEL}}}[{RI}])))", f"{{{{agent_id}}}} {n}")
                for q, n in ((0.5, "p50"), (0.95, "p95"))]),
], annotations=[
    # Deploys: each instance's version change, from the recording rule
    # that marks one for five minutes (its labels, instance and version,
    # are the annotation's text). Only the keys Grafana's schema knows:
    # the Prometheus annotation's title and tag formats are not in it.
    {"name": "Deploys", "datasource": DS, "enable": True, "hide": False, "iconColor": "blue",
     "expr": f"instance:llmchat_app_version_changed:5m{{{SEL}}}"},
])

database = dashboard("llmchat-database", "LLMChat / PostgreSQL",
    "LLMChat's PostgreSQL: connections, sizes, dead tuples, latency and the weekly maintenance backlog.", [
    panel("timeseries", "Connections by state", "Backends in pg_stat_activity by state, against max_connections (alert above 80%).",
          "short", [(f"max by (state) (llmchat_database_connections{{{SEL}}})", "{{state}}"),
                    (f"max(llmchat_database_connections_max{{{SEL}}})", "max_connections")]),
    panel("stat", "PostgreSQL up", "1 when SELECT 1 answered in the last scrape (the daily check's /health/db).",
          "none", [(f"min(llmchat_database_up{{{SEL}}})", "up")], w=6, mappings=UPDOWN),
    panel("stat", "Database size", "pg_database_size of the LLMChat database.",
          "bytes", [(f"max(llmchat_database_size_bytes{{{SEL}}})", "size")], w=6),
    panel("timeseries", "Table sizes", "Total relation size (with indexes and TOAST) of the watched tables.",
          "bytes", [(f"max by (table) (llmchat_database_table_size_bytes{{{SEL}}})", "{{table}}")]),
    panel("timeseries", "Dead tuples", "Dead tuples per table (alert when over 20% of live tuples and over 10,000: VACUUM ANALYZE).",
          "short", [(f"max by (table) (llmchat_database_table_dead_tuples{{{SEL}}})", "{{table}}")]),
    panel("timeseries", "Ping latency", "Time of SELECT 1 from the exporter.",
          "s", [(f"max(llmchat_database_ping_duration_seconds{{{SEL}}})", "SELECT 1")]),
    panel("timeseries", "Maintenance backlog", "Rows the weekly maintenance deletes: sessions idle over 30 days and orphaned messages over 90 days; they should drop to 0 every week.",
          "short", [(f"max(llmchat_expired_sessions{{{SEL}}})", "expired sessions"),
                    (f"max(llmchat_orphaned_messages{{{SEL}}})", "orphaned messages")]),
    panel("timeseries", "Oldest backlog rows", "Age of the oldest expired session and of the oldest orphaned message: a weekly cleanup keeps them under 37 and 97 days (LLMChatSessionCleanupOverdue over 38, LLMChatMessageCleanupOverdue over 98).",
          "s", [(f"max(llmchat_expired_sessions_oldest_age_seconds{{{SEL}}})", "oldest expired session"),
                (f"max(llmchat_orphaned_messages_oldest_age_seconds{{{SEL}}})", "oldest orphaned message")],
          thresholds=[(38 * 86400, "orange"), (98 * 86400, "red")]),
    panel("timeseries", "Background query durations", "How long each background query's latest run took (row counts, sizes, backlogs, custom queries); a line reaching its timeout is being cancelled (LLMChatBackgroundQueryFailing).",
          "s", [(f"max by (query) (llmchat_database_query_duration_seconds{{{SEL}}})", "{{query}}")]),
    panel("timeseries", "Background query failures", "Background query runs that timed out or failed, per hour.",
          "short", [(f"max by (query, reason) (increase(llmchat_database_query_errors_total{{{SEL}}}[1h]))", "{{query}} {{reason}}")]),
    panel("timeseries", "Reachable from each exporter", "Whether each services exporter reached PostgreSQL (LLMChatDatabaseDown fires only when none does).",
          "none", [(f"min by (instance) (llmchat_database_up{{{SEL}}})", "{{instance}}")], min=0, max=1, w=24),
    panel("timeseries", "Slow queries", "Calls per hour of statements whose mean time in pg_stat_statements is over the exporter's database.slow_query_threshold (the guide's 慢查询数量); empty without the extension (llmchat_database_statements_available 0).",
          "short", [(f"sum(increase(llmchat_database_slow_queries_total{{{SEL}}}[1h]))", "slow calls per hour")]),
    panel("timeseries", "Statement mean time", "Mean execution time of the statements run in the LLMChat database (pg_stat_statements), beside the exporter's SELECT 1.",
          "s", [(f"sum(rate(llmchat_database_statement_execution_seconds_total{{{SEL}}}[$__rate_interval])) / sum(rate(llmchat_database_statement_calls_total{{{SEL}}}[$__rate_interval]))", "statements"),
                (f"max(llmchat_database_ping_duration_seconds{{{SEL}}})", "SELECT 1")]),
])

redis = dashboard("llmchat-redis", "LLMChat / Redis",
    "LLMChat's Redis: clients, memory, hit ratio, evictions and the cache namespaces.", [
    panel("timeseries", "Clients", "Connected and blocked clients (INFO clients).",
          "short", [(f"max(llmchat_redis_connections_active{{{SEL}}})", "connected"),
                    (f"max(llmchat_redis_blocked_clients{{{SEL}}})", "blocked")]),
    panel("stat", "Redis up", "1 when PING answered in the last scrape (the daily check's /health/redis).",
          "none", [(f"min(llmchat_redis_up{{{SEL}}})", "up")], w=6, mappings=UPDOWN),
    panel("stat", "Ping latency", "Time of PING from the exporter.",
          "s", [(f"max(llmchat_redis_ping_duration_seconds{{{SEL}}})", "PING")], w=6),
    panel("timeseries", "Memory against maxmemory", "used_memory and maxmemory (0 when unlimited; alert above 90% of it).",
          "bytes", [(f"max(llmchat_redis_memory_used_bytes{{{SEL}}})", "used"),
                    (f"max(llmchat_redis_memory_max_bytes{{{SEL}}})", "maxmemory")]),
    panel("timeseries", "Hit ratio", "keyspace_hits / (hits + misses) over the interval: how often the caches answer.",
          "percentunit", [(f"max(rate(llmchat_redis_keyspace_hits_total{{{SEL}}}[{RI}])) / (max(rate(llmchat_redis_keyspace_hits_total{{{SEL}}}[{RI}])) + max(rate(llmchat_redis_keyspace_misses_total{{{SEL}}}[{RI}])))", "hit ratio")],
          min=0, max=1),
    panel("timeseries", "Evictions and expirations", "Keys evicted under maxmemory and keys expired by TTL, per second.",
          "ops", [(f"max(rate(llmchat_redis_evicted_keys_total{{{SEL}}}[{RI}]))", "evicted"),
                  (f"max(rate(llmchat_redis_expired_keys_total{{{SEL}}}[{RI}]))", "expired")]),
    panel("timeseries", "Keys per cache namespace", "Keys under each of the guide's cache namespaces (agents, sessions, messages), counted by a bounded SCAN.",
          "short", [(f"max by (namespace) (llmchat_redis_namespace_keys{{{SEL}}})", "{{namespace}}")]),
    panel("timeseries", "Reachable from each exporter", "Whether each services exporter reached Redis (LLMChatRedisDown fires only when none does).",
          "none", [(f"min by (instance) (llmchat_redis_up{{{SEL}}})", "{{instance}}")], min=0, max=1),
])

host = dashboard("llmchat-host-logs", "LLMChat / Host & logs",
    "The host (memory, disks, CPU), the backend process, the log files and the backups.", [
    panel("timeseries", "Memory usage", "Share of memory in use, 1 - available/total (the daily check warns at 80%, the fault alert is at 90%).",
          "percentunit", [(f"1 - llmchat_host_memory_available_bytes{{{SEL}}} / llmchat_host_memory_total_bytes{{{SEL}}}", "{{instance}}")],
          min=0, max=1, thresholds=[(0.8, "orange"), (0.9, "red")]),
    panel("timeseries", "Disk usage per mount", "Share of each filesystem in use (warning at 80%, critical at 85%).",
          "percentunit", [(f"1 - llmchat_host_filesystem_available_bytes{{{SEL}}} / llmchat_host_filesystem_size_bytes{{{SEL}}}", "{{mountpoint}}")],
          min=0, max=1, thresholds=[(0.8, "orange"), (0.85, "red")]),
    panel("timeseries", "CPU usage", "Share of CPU time in use on the host.",
          "percentunit", [(f"llmchat_host_cpu_usage_ratio{{{SEL}}}", "{{instance}}")], min=0, max=1),
    panel("timeseries", "Backend process memory", "Resident memory of the backend's process(es) (the guide's pm2 memory check).",
          "bytes", [(f"sum(llmchat_backend_process_resident_memory_bytes{{{SEL}}})", "RSS")]),
    panel("timeseries", "Log errors per file", "Error lines written per second to each log file (log-monitor.js alerts above 10 in an hour).",
          "short", [(f"sum by (file) (rate(llmchat_log_errors_total{{{SEL}}}[{RI}]))", "{{file}}")]),
    panel("timeseries", "Time since each log's last write", "Seconds since each log file was last written (log-monitor.js alerts after an hour).",
          "s", [(f"time() - max by (file) (llmchat_log_last_write_timestamp_seconds{{{SEL}}})", "{{file}}")],
          thresholds=[(3600, "red")]),
    panel("timeseries", "Backup age", "Age of the newest backup file of each kind (alert when the database backup is over 26 hours old).",
          "s", [(f"time() - max by (kind) (llmchat_backup_newest_timestamp_seconds{{{SEL}}})", "{{kind}}")],
          thresholds=[(93600, "red")]),
    panel("timeseries", "Backup size", "Size of the newest backup file of each kind (0 bytes: the backup failed).",
          "bytes", [(f"max by (kind) (llmchat_backup_newest_size_bytes{{{SEL}}})", "{{kind}}")]),
    panel("timeseries", "Backup files", "Backup files of each kind in the folder (none of the database: LLMChatBackupsAbsent).",
          "short", [(f"max by (kind) (llmchat_backup_files{{{SEL}}})", "{{kind}}")]),
    panel("timeseries", "Backups read back", "Whether the newest complete backup of each kind reads back whole (pg_dump's trailer, pg_restore, gzip and tar to the end; 0: LLMChatBackupInvalid), and files found invalid per hour by reason. A file still being written is not judged.",
          "short", [(f"min by (kind) (llmchat_backup_newest_valid{{{SEL}}})", "{{kind}} valid"),
                    (f"sum by (kind, reason) (increase(llmchat_backup_invalid_files_total{{{SEL}}}[1h]))", "{{kind}} invalid ({{reason}}) per hour")],
          min=0),
    panel("timeseries", "Oldest backup age", "Age of the oldest backup file of each kind: backup.sh deletes after 30 days, over 32 is LLMChatBackupRetentionNotApplied.",
          "s", [(f"time() - min by (kind) (llmchat_backup_oldest_timestamp_seconds{{{SEL}}})", "{{kind}}")],
          thresholds=[(32 * 86400, "red")]),
    panel("timeseries", "Backup folder size", "Bytes of the files in the backup folder and free on its filesystem, by exporter instance (LLMChatBackupDiskFillsBeforeNextBackup when the free space in 26 hours, at the last day's rate, is less than the newest backup set), and the bytes the read-back checks read per second.",
          "bytes", [(f"max by (instance) (llmchat_backup_dir_size_bytes{{{SEL}}})", "{{instance}} folder"),
                    (f"max by (instance) (llmchat_backup_filesystem_available_bytes{{{SEL}}})", "{{instance}} free on its filesystem"),
                    (f"sum by (instance) (rate(llmchat_backup_checked_bytes_total{{{SEL}}}[{RI}]))", "{{instance}} checked per second")]),
    panel("timeseries", "Restore drill", "The optional restore drill ([backup.drill]): whether the last one restored the newest dump into the scratch database with row counts near the live ones (LLMChatBackupDrillFailing at 0), and the days since the last success (LLMChatBackupDrillTooOld over 8).",
          "short", [(f"min by (instance) (llmchat_backup_drill_success{{{SEL}}})", "{{instance}} last drill succeeded"),
                    (f"(time() - max by (instance) (llmchat_backup_drill_last_success_timestamp_seconds{{{SEL}}})) / 86400", "{{instance}} days since a success")],
          min=0),
    panel("timeseries", "Backup disk full in", "When the backup folder's filesystem is full at the last day's rate of shrinking free space (llmchat:backup_filesystem_seconds_until_full). 365 days is the cap, and what a filesystem whose free space does not shrink shows. Under a day or two, see LLMChatBackupDiskFillsBeforeNextBackup's runbook.",
          "s", [(f"min by (instance, mountpoint) (llmchat:backup_filesystem_seconds_until_full{{{SEL}}})", "{{instance}} {{mountpoint}}")],
          min=0, thresholds=[(7 * 86400, "green")], threshold_base="red"),
    panel("stat", "Log files and backup folder present", "Whether each configured log file (application and access logs) is there and readable, and the backup folder exists, where the exporter looks (absent: not written yet, or nginx or backup.sh not installed on this host; the compose stack creates none of them). A file or folder that appears is read without a restart.",
          "short", [(f"min by (file) (llmchat_log_file_readable{{{SEL}}})", "{{file}}"),
                    (f"min(llmchat_backup_dir_exists{{{SEL}}})", "backup folder")],
          mappings=[(0, "absent", "red"), (1, "present", "green")]),
])

N = f"llmchat_receiver_notifications_total{{{RSEL}}}"
alerts = dashboard("llmchat-alerts-recovery", "LLMChat / Alerts & recovery",
    "What llmchat-receiver did with Alertmanager's alerts: notifications by channel and result, the outbox, and recovery actions.", [
    panel("timeseries", "Notifications by channel and result", "Send attempts per second: sent, failed (will be retried) and dead (given up).",
          "ops", [(f"sum by (channel, result) (rate({N}[{RI}]))", "{{channel}} {{result}}")]),
    panel("timeseries", "Outbox", "Notifications waiting to be sent, and dead-lettered ones (LLMChatNotificationsFailing fires on any).",
          "short", [(f"sum(llmchat_receiver_outbox_pending{{{RSEL}}})", "pending"),
                    (f"sum(llmchat_receiver_outbox_dead{{{RSEL}}})", "dead")]),
    panel("timeseries", "Recovery actions by result", "Recovery decisions per second by action and result: succeeded, failed, timed_out, cancelled, dry_run, abandoned (the receiver stopped mid-run) or skipped (cooldown, rate limit, running, unavailable).",
          "ops", [(f"sum by (action, result) (rate(llmchat_receiver_recovery_actions_total{{{RSEL}}}[{RI}]))", "{{action}} {{result}}")]),
    panel("timeseries", "Alerts received", "Alerts per second in Alertmanager's posts, by status and severity.",
          "ops", [(f"sum by (status, severity) (rate(llmchat_receiver_alerts_received_total{{{RSEL}}}[{RI}]))", "{{status}} {{severity}}")]),
    panel("timeseries", "Send latency p95", "95th percentile of one send attempt's time, by channel.",
          "s", [(f"histogram_quantile(0.95, sum by (channel, le) (rate(llmchat_receiver_send_duration_seconds_bucket{{{RSEL}}}[{RI}])))", "{{channel}}")]),
    panel("timeseries", "Webhook requests by status", "POST /webhook answers per second by HTTP status (401: wrong credentials; 503: store unavailable).",
          "reqps", [(f"sum by (code) (rate(llmchat_receiver_webhook_requests_total{{{RSEL}}}[{RI}]))", "{{code}}")]),
    panel("timeseries", "Outbox by receiver", "Notifications waiting in each receiver's outbox (replicas on one PostgreSQL store show the same rows).",
          "short", [(f"max by (instance) (llmchat_receiver_outbox_pending{{{RSEL}}})", "{{instance}}")]),
    panel("timeseries", "Store writable", "Whether each receiver's outbox store took its latest write (0: Alertmanager's posts get 503; LLMChatReceiverStoreNotWritable).",
          "none", [(f"min by (instance) (llmchat_receiver_store_writable{{{RSEL}}})", "{{instance}}")], min=0, max=1),
    panel("timeseries", "Pipeline up", "Whether Prometheus reaches each receiver and Alertmanager (LLMChatReceiverDown, LLMChatAlertmanagerDown; a job with no target at all is LLMChatTargetMissing).",
          "none", [(f"min by (job, instance) (up{{{RSEL}}})", "{{job}} {{instance}}")], min=0, max=1),
    panel("timeseries", "Alertmanager failed notifications", "Notifications Alertmanager failed to deliver, per second, by integration (LLMChatAlertmanagerNotificationsFailing).",
          "ops", [(f"sum by (integration) (rate(alertmanager_notifications_failed_total{{{RSEL}}}[{RI}]))", "{{integration}}")]),
    panel("timeseries", "Template errors", "Message templates that failed to render, by channel; the built-in template was sent instead.",
          "ops", [(f"sum by (channel) (rate(llmchat_receiver_template_errors_total{{{RSEL}}}[{RI}]))", "{{channel}}")]),
    panel("timeseries", "Oldest pending notification", "Age of the oldest notification waiting in each channel (LLMChatNotificationBacklog pages at 10 minutes); each channel drains on its own, so one behind delays no other.",
          "s", [(f"max by (instance, channel) (llmchat_receiver_outbox_oldest_pending_age_seconds{{{RSEL}}})", "{{instance}} {{channel}}")],
          thresholds=[(600, "red")]),
], receiver=True)

# The budget's recording rules aggregate by job and currency: their
# `instance=~"$instance"` (the linter's rule) matches while "All" is chosen.
llm = dashboard("llmchat-llm", "LLMChat / LLM usage & cost",
    "What LLMChat's LLM calls cost and how its providers answer: spend against the budget (chat.llm.budget), tokens, cost by agent, time to first token and provider errors.", [
    panel("timeseries", "Spend today (UTC) against the budget", "What the job has spent since 00:00 UTC, where the last hour's rate takes it by 24:00, and the daily budget (chat.llm.budget.daily). LLMChatDailyBudgetForecast warns when the forecast reaches 80% of the budget and pages at 100%.",
          "short", [(f"llmchat:chat_cost:spent_today{{{SEL}}}", "{{job}} spent ({{currency}})"),
                    (f"llmchat:chat_cost:forecast_today{{{SEL}}}", "{{job}} forecast by 24:00 ({{currency}})"),
                    (f'max by (job, currency) (llmchat_chat_cost_budget{{{SEL}, period="day"}})', "{{job}} budget ({{currency}})")], min=0),
    panel("timeseries", "Spend this month (UTC) against the budget", "What the job has spent since the 1st, 00:00 UTC, where the last day's rate takes it by the month's end, and the monthly budget (chat.llm.budget.monthly). LLMChatMonthlyBudgetForecast warns at 80% and pages at 100%.",
          "short", [(f"llmchat:chat_cost:spent_month{{{SEL}}}", "{{job}} spent ({{currency}})"),
                    (f"llmchat:chat_cost:forecast_month{{{SEL}}}", "{{job}} forecast by the month's end ({{currency}})"),
                    (f'max by (job, currency) (llmchat_chat_cost_budget{{{SEL}, period="month"}})', "{{job}} budget ({{currency}})")], min=0),
    panel("timeseries", "Cost per hour by agent", "Spend per hour by agent, at the current rate, from the price table (chat.llm.prices); models without a price are in Unpriced tokens, not here.",
          "short", [(f"sum by (agent_id, currency) (rate(llmchat_chat_cost_total{{{SEL}}}[{RI}])) * 3600", "{{agent_id}} ({{currency}}/h)")], min=0),
    panel("timeseries", "Tokens per second by model and type", "Tokens per second by model and type (input, output, cached input), from the chat events' usage (gen_ai.client.token.usage). LLMChatTokenRateAnomaly at three times the same hour of the last two weeks.",
          "short", [(f"sum by (model, type) (rate(llmchat_chat_tokens_total{{{SEL}}}[{RI}]))", "{{model}} {{type}}")], min=0),
    panel("timeseries", "Time to first token by agent", "p50 and p95 of the time to the first streamed token by agent, estimated from the histogram's buckets (the GenAI boundaries). LLMChatTimeToFirstTokenBudgetBurn when over 1% of an agent's answers take more than 2.56 s.",
          "s", [(f"histogram_quantile({q}, sum by (agent_id, le) (rate(llmchat_chat_time_to_first_token_seconds_bucket{{{SEL}}}[{RI}])))", f"{{{{agent_id}}}} {n}")
                for q, n in ((0.5, "p50"), (0.95, "p95"))], min=0, thresholds=[(2.56, "red")]),
    panel("timeseries", "Errors by provider and type", "Share of each provider's calls that failed, by error type (rate_limited, timeout, overloaded, context_length, content_filter, auth, provider_5xx, other). LLMChatProviderDegraded above 10% on one provider while the others answer.",
          "percentunit", [(f"sum by (provider, error_type) (rate(llmchat_chat_provider_errors_total{{{SEL}}}[{RI}])) / on (provider) group_left () sum by (provider) (rate(llmchat_chat_provider_calls_total{{{SEL}}}[{RI}]))", "{{provider}} {{error_type}}")],
          min=0, thresholds=[(0.1, "red")]),
    panel("timeseries", "Input tokens per request by model", "Mean input tokens per LLM call by model: context growing per session, or a changed prompt, shows here before the bill.",
          "short", [(f'sum by (model) (rate(llmchat_chat_token_usage_sum{{{SEL}, type="input"}}[{RI}])) / sum by (model) (rate(llmchat_chat_token_usage_count{{{SEL}, type="input"}}[{RI}]))', "{{model}}")], min=0),
    panel("timeseries", "Unpriced tokens", "Tokens per second of models without a price in chat.llm.prices: spend the cost panels and the budget do not see. Add the model's price.",
          "short", [(f"sum by (model, type) (rate(llmchat_chat_unpriced_tokens_total{{{SEL}}}[{RI}]))", "{{model}} {{type}}")], min=0),
    panel("timeseries", "LLM calls by instance and provider", "Chat events per second with an LLM call, by exporter instance and provider.",
          "ops", [(f"sum by (instance, provider) (rate(llmchat_chat_provider_calls_total{{{SEL}}}[{RI}]))", "{{instance}} {{provider}}")], min=0),
])

DASHBOARDS = {
    "overview.json": overview,
    "database.json": database,
    "redis.json": redis,
    "host-logs.json": host,
    "alerts-recovery.json": alerts,
    "llm-usage.json": llm,
}


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name, d in DASHBOARDS.items():
        text = json.dumps(d, indent=2, ensure_ascii=False) + "\n"
        path = os.path.join(HERE, name)
        if check:
            try:
                with open(path, encoding="utf-8") as f:
                    if f.read() != text:
                        stale.append(name)
            except FileNotFoundError:
                stale.append(name)
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    registry = PANEL_IDS_HEADER + yaml.safe_dump(PANEL_IDS, sort_keys=False, allow_unicode=True, width=1000)
    if check and NEW_PANEL_IDS:
        stale.append("panel-ids.yml (new panels: " + "; ".join(NEW_PANEL_IDS) + ")")
    elif not check:
        with open(PANEL_IDS_FILE, "w", encoding="utf-8") as f:
            f.write(registry)
    if stale:
        print("out of date (run python3 dashboards/generate.py):", ", ".join(stale))
        sys.exit(1)


if __name__ == "__main__":
    main()
