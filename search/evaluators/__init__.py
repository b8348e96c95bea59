"""Evaluators turn a genotype (or the architecture it denotes) into metrics: ``{"accuracy": ..., "status": "ok"}``."""
