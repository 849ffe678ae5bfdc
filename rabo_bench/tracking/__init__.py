"""Sinks that mirror the results table (MLflow); a tracking failure never loses a result."""
