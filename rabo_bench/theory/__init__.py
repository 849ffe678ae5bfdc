"""Rate measurement against the theory (SPEC §4): power-law fits, plots, estimator trade-offs."""
