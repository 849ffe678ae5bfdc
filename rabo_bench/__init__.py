"""rabo-bench: federated bilevel optimisation with dual pruning (RABO, RAFBO) and its baselines."""

__version__ = "0.1.0"
