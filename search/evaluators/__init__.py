"""Evaluators turn a genotype (or the architecture it denotes) into metrics: ``{"accuracy": ..., "status": "ok"}``.

``base.Evaluator`` is what the search frame asks of one (and ``base.Measurement`` of a profiler); ``train``,
``table``, ``zero_cost`` and ``cost`` derive from ``base.EvaluatorBase``. ``proxy_pool`` scores genotypes with
zero-cost proxies and keeps a scored pool in the run directory (the zero-cost evaluator's reference, the warm start).
"""
