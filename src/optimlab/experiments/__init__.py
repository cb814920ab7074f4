"""Registered claims, one module per paper. Import :func:`all_claims` to discover them."""

from optimlab.experiments.registry import Claim, RunContext, all_claims, register_claim

__all__ = ["Claim", "RunContext", "all_claims", "register_claim"]
