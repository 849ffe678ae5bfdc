"""Reports computed from saved results, never by re-running (DESIGN.md §3)."""
