"""Evaluators turn a genotype (or the architecture it denotes) into metrics: ``{"accuracy": ..., "status": "ok"}``.

``base.Evaluator`` is what the search frame asks of one (and ``base.Measurement`` of a profiler); ``train``,
``table`` and ``cost`` derive from ``base.EvaluatorBase``.
"""
