"""Prometheus metrics of the server: requests by endpoint and status, tokens, queue depth,
latency, time to first token, time per output token."""
from __future__ import annotations

import time
from typing import Any

from .engine import Engine


class Metrics:
    def __init__(self, engine: Engine) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            disable_created_metrics,
        )
        disable_created_metrics()  # no *_created series: counters and histograms only
        self.registry = r = CollectorRegistry()
        self.requests = Counter("gptkit_requests", "HTTP requests, by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.prompt_tokens = Counter("gptkit_prompt_tokens", "Prompt tokens processed", registry=r)
        self.generation_tokens = Counter("gptkit_generation_tokens", "Tokens generated", registry=r)
        Gauge("gptkit_queue_depth", "Requests waiting for a slot", registry=r).set_function(lambda: engine.queued)
        Gauge("gptkit_running_sequences", "Sequences in the running batch",
              registry=r).set_function(lambda: engine.running)
        Gauge("gptkit_batch_slots", "Slots of the running batch (--max-batch)",
              registry=r).set_function(lambda: engine.max_batch)
        self.latency = Histogram("gptkit_request_latency_seconds", "Time from request to the end of the response",
                                 ["endpoint"], registry=r,
                                 buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
        self.ttft = Histogram("gptkit_time_to_first_token_seconds", "Time from request to the first token",
                              registry=r, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.tpot = Histogram("gptkit_time_per_output_token_seconds", "Mean time between tokens of a request",
                              registry=r, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))


ENDPOINTS = {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics", "/"}


class MetricsMiddleware:
    """Counts every response by endpoint and status (pure ASGI: streaming untouched)."""

    def __init__(self, app: Any, state: Any) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"
        status = [0]
        start = time.perf_counter()

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            m = self.state.metrics
            if m is not None and status[0]:
                m.requests.labels(endpoint, str(status[0])).inc()
                m.latency.labels(endpoint).observe(time.perf_counter() - start)
