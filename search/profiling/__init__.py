"""Hardware profiling: measured latency/memory of built models (cached) and a per-op latency predictor.

Entry points (import them from their modules; this package imports nothing, because the compiler's harness
backend uses ``measure`` while ``compiler.api`` is still loading):

- ``measure``: the timing loop and report shared with the generated profile.py (``Settings``, ``profile_module``).
- ``profiler.Profiler(device=..., batch_sizes=..., dtype=..., cache=PATH)``: ``metrics(arch)`` ->
  ``{latency_ms, latency_p90_ms, throughput, peak_mem_mb}``, each architecture measured once per device/settings.
- ``predictor.LatencyPredictor(TABLE, batch_size=...)``: ``metrics(arch)`` -> ``{latency_ms}`` from a table built by
  ``python -m compiler task=profile_ops device=cpu|cuda`` (``optable``, ``task``).
- ``synthetic.mobilenet_like(seed)``: random MobileNetV2-like networks as .arch text.

``Profiler`` and ``LatencyPredictor`` are what a search's ``profile`` builds: called on a compiled candidate, with
``metric_names`` and ``measures_time`` (the ``Measurement`` protocol of ``search/evaluators/base.py``).
"""
