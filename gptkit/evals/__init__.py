"""Benchmarks: log-likelihood scoring (loglik), multiple-choice tasks, lm-evaluation-harness."""
from __future__ import annotations

from .loglik import Loglik, loglikelihood

__all__ = ["Loglik", "loglikelihood"]
