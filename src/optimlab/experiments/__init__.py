"""The papers' claims, one module per paper; modules whose name starts with ``_`` are shared helpers.

The claim framework (registry, run context, criteria, runner) is :mod:`optimlab.evidence`;
``optimlab.evidence.all_claims()`` imports every module here whose name does not start with ``_``.
"""
