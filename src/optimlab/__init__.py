"""optimlab: optimization methods for machine learning, each with a rerunnable experiment for its paper's claim.

Subpackages are imported on demand (``from optimlab.sam import SAM``); importing ``optimlab`` itself is cheap.
"""

__version__ = "0.1.0"


class ProvisionalWarning(UserWarning):
    """Warned once when a method whose algorithm could not be checked against its paper is constructed."""


__all__ = ["ProvisionalWarning", "__version__"]
