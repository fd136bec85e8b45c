"""Prometheus metrics, computed from the control tables whenever they are scraped.

Whatever runs the jobs (workers on many machines, cron, ``highmark run``), the control database
knows it all, so any process can expose it: ``highmark metrics`` prints it once, and
:func:`serve` answers ``GET /metrics`` (``highmark worker --metrics-port``).

=======================================================  =========================================
``highmark_runs_total{job_id,status}``                   finished runs (success, failed,
                                                         cancelled), purged ones included
``highmark_rows_total{job_id,kind}``                     rows read, written, updated, deleted,
                                                         rejected (quarantined bad rows)
``highmark_run_duration_seconds{job_id}``                histogram of the runs in etl_job_runs
``highmark_running_runs{job_id}``                        live runs
``highmark_last_success_timestamp_seconds{job_id}``      when the last successful run finished
``highmark_job_stale{job_id}``                           1 when older than the job's ``freshness``
``highmark_watermark_age_seconds{job_id}``               now minus the watermark's last move
``highmark_control_store_up``                            0 when the control store cannot be read
``highmark_cdc_lag_bytes{job_id}``                       bytes of log a CDC job's source keeps for
                                                         it (asked of the source at each scrape)
=======================================================  =========================================
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from highmark.config import ProjectConfig
from highmark.errors import ConfigError, HighmarkError
from highmark.store.metrics import ROW_KINDS, JobMetrics, MetricsSnapshot, read_metrics
from highmark.store.store import ControlStore

log = logging.getLogger(__name__)

# Upper bounds of the run-duration histogram, in seconds: ETL runs last seconds to hours.
DURATION_BUCKETS: tuple[float, ...] = (
    1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600,
)  # fmt: skip


class HighmarkCollector(Collector):
    """Reads the control tables on every collect. ``strict``: raise when they cannot be read
    (``highmark metrics``); otherwise report ``highmark_control_store_up 0`` (a server)."""

    def __init__(self, store: ControlStore, config: ProjectConfig, *, strict: bool = True) -> None:
        self.store = store
        self.config = config
        self.strict = strict

    def collect(self) -> Iterator[Metric]:
        try:
            snapshot = read_metrics(self.store, DURATION_BUCKETS)
        except HighmarkError as exc:
            if self.strict:
                raise
            log.warning("metrics: %s", exc)
            yield _up(0)
            return
        yield _up(1)
        yield from self._families(snapshot)
        yield from _cdc_lag(self.store, self.config)

    def _families(self, snapshot: MetricsSnapshot) -> Iterator[Metric]:
        jobs = list(snapshot.jobs.values())
        runs = CounterMetricFamily(
            "highmark_runs",
            "Finished runs by job and status, counting runs purged into etl_run_summaries.",
            labels=["job_id", "status"],
        )
        rows = CounterMetricFamily(
            "highmark_rows",
            "Rows read, written (inserted), updated, deleted and rejected (quarantined) by "
            "finished runs, purged included.",
            labels=["job_id", "kind"],
        )
        durations = HistogramMetricFamily(
            "highmark_run_duration_seconds",
            "Duration of the finished runs kept in etl_job_runs (the last retention.runs_days).",
            labels=["job_id"],
            unit="",
        )
        running = GaugeMetricFamily(
            "highmark_running_runs", "Runs of the job running now.", labels=["job_id"]
        )
        last_success = GaugeMetricFamily(
            "highmark_last_success_timestamp_seconds",
            "When the job's last successful run finished (Unix time).",
            labels=["job_id"],
        )
        stale = GaugeMetricFamily(
            "highmark_job_stale",
            "1 when the job's last success is older than its freshness SLA, else 0.",
            labels=["job_id"],
        )
        watermark_age = GaugeMetricFamily(
            "highmark_watermark_age_seconds",
            "Seconds since the job's watermark last moved (etl_watermarks.last_updated_at).",
            labels=["job_id"],
        )
        for job in jobs:
            label = [job.job_id]
            for status, count in sorted(job.runs.items()):
                runs.add_metric([job.job_id, status], count)
            for kind in ROW_KINDS:
                rows.add_metric([job.job_id, kind], job.rows.get(kind, 0))
            if job.durations is not None:
                d = job.durations
                buckets = [(_le(bound), count) for bound, count in d.buckets]
                durations.add_metric(label, [*buckets, ("+Inf", d.count)], d.total)
            running.add_metric(label, job.running)
            if job.last_success_at is not None:
                last_success.add_metric(label, job.last_success_at.timestamp())
            spec = self.config.jobs.get(job.job_id)
            if spec is not None and spec.freshness is not None and job.is_active:
                stale.add_metric(label, float(_is_stale(job, spec.freshness, snapshot.now)))
            if job.watermark_updated_at is not None:
                age = (snapshot.now - job.watermark_updated_at).total_seconds()
                watermark_age.add_metric(label, max(0.0, age))
        yield from (runs, rows, durations, running, last_success, stale, watermark_age)


def _cdc_lag(store: ControlStore, config: ProjectConfig) -> Iterator[Metric]:
    from highmark import cdc_ops

    jobs = cdc_ops.cdc_jobs(config)
    if not jobs:
        return
    lag = GaugeMetricFamily(
        "highmark_cdc_lag_bytes",
        "Bytes of log (WAL, binlog) the source keeps for the CDC job; absent when unknown.",
        labels=["job_id"],
    )
    for job in jobs:
        found = cdc_ops.state(config, store, job)
        if found.error:
            log.warning("metrics: %s: %s", job.job_id, found.error)
        elif found.lag_bytes is not None:
            lag.add_metric([job.job_id], found.lag_bytes)
    yield lag


def render(store: ControlStore, config: ProjectConfig) -> bytes:
    """The metrics in the Prometheus text exposition format (raises if the store is down)."""
    registry = CollectorRegistry()
    registry.register(HighmarkCollector(store, config))
    return generate_latest(registry)


def serve(
    store: ControlStore, config: ProjectConfig, port: int, host: str = "127.0.0.1"
) -> WSGIServer:
    """Answer ``GET /metrics`` on ``host:port`` from a daemon thread; ``port=0`` picks a free
    one (``server.server_port``). Stop it with ``server.shutdown(); server.server_close()``."""
    registry = CollectorRegistry()
    registry.register(HighmarkCollector(store, config, strict=False))
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    log.info("metrics on http://%s:%s/metrics", host, server.server_port)
    return server


def _up(value: int) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "highmark_control_store_up", "1 when the control store could be read.", value=value
    )


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _is_stale(job: JobMetrics, freshness: timedelta, now: datetime) -> bool:
    """Stale: the last success is older than ``freshness``. With every success purged, the
    watermark's last move, else the start of the last day with a purged success, stands in for
    it; a job that never succeeded is stale once it was registered longer ago than that (as for
    the ``stale`` alert)."""
    since = job.last_success_at or job.watermark_updated_at
    if since is None and job.last_success_day is not None:
        since = datetime.combine(job.last_success_day, time(), tzinfo=UTC)
    since = since or job.created_at
    return since is None or now - since > freshness
