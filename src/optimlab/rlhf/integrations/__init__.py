"""Adapters to peer libraries (imported lazily; the core of :mod:`optimlab.rlhf` never imports them)."""
