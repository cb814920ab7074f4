"""Measurements: Hessian spectra and traces, sharpness, step-time ratios, memory and collectives."""

from optimlab.metrics.collectives import CollectiveCount, count_collectives
from optimlab.metrics.hessian import (
    EigResult,
    TraceEstimate,
    dataset_hvp,
    exact_hessian,
    hessian_trace,
    hutchinson_from_hvp,
    hvp,
    top_eigenvalues,
    top_eigenvalues_from_hvp,
)
from optimlab.metrics.memory import MemoryResult, peak_memory, state_bytes
from optimlab.metrics.sharpness import SharpnessResult, batched_m_sharpness, m_sharpness, rho_sharpness
from optimlab.metrics.timing import TimingResult, compare_step_times

__all__ = ["CollectiveCount", "EigResult", "MemoryResult", "SharpnessResult", "TimingResult", "TraceEstimate",
           "batched_m_sharpness", "compare_step_times", "count_collectives", "dataset_hvp", "exact_hessian",
           "hessian_trace", "hutchinson_from_hvp", "hvp", "m_sharpness", "peak_memory", "rho_sharpness",
           "state_bytes", "top_eigenvalues", "top_eigenvalues_from_hvp"]
