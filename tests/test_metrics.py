"""Operation outcome metrics read as prometheus-client's Counter and Histogram would show them."""

from __future__ import annotations

from prometheus_client import REGISTRY

from service import metrics

DURATION = "batchd_upstream_duration_seconds"


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_outcomes_count_by_status_and_fill_cumulative_buckets() -> None:
    # The registry is the process's: compare with what earlier tests left.
    completed = sample("batchd_operations_executed_total", {"status": "completed"})
    timed_out = sample("batchd_operations_executed_total", {"status": "timed_out"})
    at_5ms = sample(f"{DURATION}_bucket", {"le": "0.005"})
    at_10ms = sample(f"{DURATION}_bucket", {"le": "0.01"})
    at_60s = sample(f"{DURATION}_bucket", {"le": "60.0"})
    everything = sample(f"{DURATION}_bucket", {"le": "+Inf"})
    total = sample(f"{DURATION}_sum")

    metrics.operation_finished("completed", 0.005)  # on a bound: counts in it
    metrics.operation_finished("completed", 0.0051)
    metrics.operation_finished("timed_out", 61.0)

    assert sample("batchd_operations_executed_total", {"status": "completed"}) == completed + 2
    assert sample("batchd_operations_executed_total", {"status": "timed_out"}) == timed_out + 1
    assert sample(f"{DURATION}_bucket", {"le": "0.005"}) == at_5ms + 1
    assert sample(f"{DURATION}_bucket", {"le": "0.01"}) == at_10ms + 2
    assert sample(f"{DURATION}_bucket", {"le": "60.0"}) == at_60s + 2
    assert sample(f"{DURATION}_bucket", {"le": "+Inf"}) == everything + 3
    assert sample(f"{DURATION}_count") == everything + 3
    assert abs(sample(f"{DURATION}_sum") - (total + 61.0101)) < 1e-9
    assert sample("batchd_operations_executed_created", {"status": "timed_out"}) > 0
    assert sample(f"{DURATION}_created") > 0
