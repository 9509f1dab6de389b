"""What ``/metrics`` exposes, in Prometheus' text format (prometheus-client).

Each app has its own registry, so several apps in one process (tests) keep their own counts.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Seconds: a single transaction is scored in well under a millisecond; a batch of 1,000 in ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# fraud_probability at the real class balance: frauds are rare, so most mass is near 0.
SCORE_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.8, 1.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("fraud_serve_requests", "HTTP requests answered", ["path", "status"], registry=r)
        self.latency = Histogram("fraud_serve_request_seconds", "Time to answer a request", ["path"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter("fraud_serve_errors", "Requests refused or failed, by kind "
                              "(unauthorized, invalid, too_large, unscorable, not_ready, store_unavailable, "
                              "store_full, online_state_missing, transaction_conflict, internal)", ["kind"],
                              registry=r)
        self.transactions = Counter("fraud_serve_transactions_scored", "Transactions scored", ["model_version"],
                                    registry=r)
        self.flagged = Counter("fraud_serve_transactions_flagged", "Transactions scored as fraud",
                               ["model_version"], registry=r)
        self.scores = Histogram("fraud_serve_fraud_probability", "fraud_probability of the transactions scored",
                                buckets=SCORE_BUCKETS, registry=r)
        self.model_info = Gauge("fraud_serve_model_info", "The model version serving (1) and the ones that did",
                                ["model_name", "model_version", "model_run_id"], registry=r)
        self.model_loaded_at = Gauge("fraud_serve_model_loaded_timestamp_seconds",
                                     "When the serving version was swapped in", registry=r)
        self.replays = Counter("fraud_serve_transactions_replayed", "Payments answered again from the store (a "
                               "retry of an id already answered)", registry=r)
        self.swaps = Counter("fraud_serve_model_swaps", "Model versions swapped in", registry=r)
        self.load_failures = Counter("fraud_serve_model_load_failures", "Versions that failed to load or check",
                                     ["model_version"], registry=r)
        self.registry_errors = Counter("fraud_serve_registry_errors", "Failed reads of the registry alias",
                                       registry=r)
