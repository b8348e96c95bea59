"""Hardware profiling: measured latency/memory of built models (cached) and a per-op latency predictor."""
