"""The in-process profiler: the timing loop, memory meter, settings, and the result cache a search relies on."""
from __future__ import annotations

import dataclasses
import gc
import os
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from compiler.api import compile_source
from compiler.backends.runtime import measure
from search.profiling.cache import ProfileCache, architecture_fingerprint, cache_key
from search.profiling.profiler import MeasurementError, Profiler

NET = """
model net(width = 8) {
    input x: [3, 16, 16]
    f = x -> conv(width, 3) -> bn -> relu -> maxpool(2)
    output f -> flatten -> linear(10)
}
"""
QUICK = dict(device="cpu", threads=1, warmup=1, warmup_s=0.0, min_time_s=0.0, min_iters=3, max_iters=3)
STEP_S = 2**-10  # a fake step of about 1 ms: a power of two keeps the fake clock's sums and differences exact


class FakeClock:
    """The clocks measure.py reads, moved on only by the timed step: timings are exact values, not wall-clock
    bounds that a loaded machine can break."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 0.0
        monkeypatch.setattr(measure, "time", SimpleNamespace(perf_counter=self.read, thread_time=self.read))

    def read(self) -> float:
        return self.now

    def tick(self, seconds: float = STEP_S) -> None:
        self.now += seconds


def test_percentile_interpolates_between_ranks() -> None:
    assert measure.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert measure.percentile([1.0, 2.0, 3.0, 4.0], 90) == pytest.approx(3.7)
    assert measure.percentile([1.0, 2.0, 3.0, 4.0], 0) == 1.0 and measure.percentile([7.0], 90) == 7.0
    with pytest.raises(ValueError):
        measure.percentile([], 50)


def test_timing_loop_respects_warmup_and_iteration_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    cpu = torch.device("cpu")
    fixed = measure.Settings(warmup=3, warmup_s=0.0, min_time_s=0.0, min_iters=7, max_iters=7)
    timing = measure.time_iterations(lambda: calls.append(1), cpu, fixed)
    assert timing.iters == 7 and timing.block_iters == 1 and len(calls) == 10
    assert len(timing.samples_ms) == 7 and all(t >= 0 for t in timing.samples_ms)
    capped = dataclasses.replace(fixed, min_time_s=60.0, min_iters=2, max_iters=5)
    assert measure.time_iterations(lambda: None, cpu, capped).iters == 5  # a minute asked, the cap wins
    # adaptive: ~1 ms steps and 50 ms asked for -> ceil(0.05 / 2**-10) = 52 iterations, never fewer than min_iters
    clock = FakeClock(monkeypatch)
    adaptive = dataclasses.replace(fixed, min_time_s=0.05, min_iters=4, max_iters=10_000)
    assert measure.time_iterations(clock.tick, cpu, adaptive).samples_ms == [STEP_S * 1e3] * 52
    short = dataclasses.replace(adaptive, min_time_s=0.002)  # 3 iterations would fill it
    assert measure.time_iterations(clock.tick, cpu, short).samples_ms == [STEP_S * 1e3] * 4


def test_timing_loop_times_blocks_of_back_to_back_iterations(monkeypatch: pytest.MonkeyPatch) -> None:
    """One event per block boundary (what a GPU needs for launch-bound networks), exercised with host events."""
    cpu = torch.device("cpu")
    blocked = measure.Settings(warmup=2, warmup_s=0.0, min_time_s=0.06, min_iters=4, max_iters=10_000,
                               block_time_s=0.005)
    clock = FakeClock(monkeypatch)
    steps: list[float] = []  # the fake time of each call
    timing = measure.time_iterations(lambda: (steps.append(clock.now), clock.tick()), cpu, blocked)
    # ~1 ms per call: 62 iterations fill the 60 ms, in blocks of ceil(5 ms / ~1 ms) = 6 calls; 10 whole blocks
    assert (timing.block_iters, len(timing.samples_ms), timing.iters) == (6, 10, 60)
    assert len(steps) == 2 + 60  # the warm-up, then the blocks
    assert timing.samples_ms == [STEP_S * 1e3] * 10  # a sample is a block's mean per iteration
    # a huge block never leaves fewer than MIN_BLOCKS samples when there are that many iterations
    huge = dataclasses.replace(blocked, min_time_s=0.0, min_iters=10, max_iters=10, block_time_s=60.0)
    few = measure.time_iterations(clock.tick, cpu, huge)
    assert (few.block_iters, len(few.samples_ms)) == (2, 5)
    # defaults: blocks on CUDA, every iteration alone on the CPU
    assert measure.Settings(device="cuda").block_seconds() == measure.CUDA_BLOCK_S > 0
    assert measure.Settings().block_seconds() == 0.0
    with pytest.raises(ValueError, match="must not be negative"):
        measure.Settings(block_time_s=-1.0)


def test_host_and_device_times_coincide_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU's split of a call into issuing and running, on the CPU: both are the synchronous time."""
    settings = measure.Settings(warmup=1, warmup_s=0.0)
    fake = FakeClock(monkeypatch)
    calls: list[float] = []
    host, work = measure.time_host_and_device(lambda: (calls.append(fake.now), fake.tick(2 * STEP_S)),
                                              torch.device("cpu"), settings, calls=3, bursts=3)
    assert host == work == 2 * STEP_S * 1e3 and len(calls) == 1 + 3 * 3  # the warm-up, then 3 bursts of 3
    clock = measure.HostEvent(iter([1.0, 1.25]).__next__)
    later = measure.HostEvent(lambda: 1.25)
    clock.record()
    later.record()
    assert clock.elapsed_time(later) == pytest.approx(250.0)


def test_gpu_burst_is_repeated_with_a_longer_spin_when_the_device_ran_dry(monkeypatch) -> None:
    """The CUDA control path of time_host_and_device, on the CPU: fake events and a fake spin kernel. A burst
    whose start event had already completed when the host finished issuing is discarded and the spin doubled."""
    spins: list[float] = []
    answers = iter([True, False, False])  # start.query(): ran dry once, then busy while the host issues

    class FakeEvent:
        def __init__(self) -> None:
            self.at = 0.0

        def record(self) -> None:
            self.at = time.perf_counter()

        def query(self) -> bool:
            return next(answers)

        def elapsed_time(self, end: "FakeEvent") -> float:
            return 3.0 * 2  # pretend the device ran the 2 calls in 6 ms

    monkeypatch.setattr(measure, "make_event", lambda device, settings: FakeEvent())
    monkeypatch.setattr(measure, "synchronize", lambda device: None)
    monkeypatch.setattr(measure, "sleep_device", lambda device, ms: spins.append(ms))
    settings = measure.Settings(device="cuda", warmup=1, warmup_s=0.0)
    clock = FakeClock(monkeypatch)
    host, work = measure.time_host_and_device(lambda: clock.tick(0.02), torch.device("cuda"), settings,
                                              calls=2, bursts=2)
    # first spin sized by the warm-up: 2 x 2 calls x 20 ms + 1 ms; doubled after running dry; after a good burst:
    # twice its issuing time (2 x 40 ms) plus 1 ms
    assert spins == pytest.approx([81.0, 162.0, 81.0])
    assert work == 3.0 and host == pytest.approx(20.0)


def test_settings_reject_mistakes_with_a_message() -> None:
    with pytest.raises(ValueError, match="dtype must be one of fp32, fp16, bf16"):
        measure.Settings(dtype="fp8")
    with pytest.raises(ValueError, match="batch sizes must be positive"):
        measure.Settings(batch_sizes=())
    with pytest.raises(ValueError, match="needs device='cpu' and threads=1"):
        measure.Settings(clock="thread")
    assert measure.Settings(clock="thread", threads=1).key()["clock"] == "thread"


def test_pinning_runs_the_timing_on_one_core_and_restores_the_affinity(monkeypatch) -> None:
    before = os.sched_getaffinity(0)
    core = max(before)
    seen: list[set[int]] = []
    real_time_iterations = measure.time_iterations

    def spying_time_iterations(*args, **kwargs):
        seen.append(os.sched_getaffinity(0))
        return real_time_iterations(*args, **kwargs)
    monkeypatch.setattr(measure, "time_iterations", spying_time_iterations)
    model = compile_source(NET).build()
    report = measure.profile_module(model, [(3, 16, 16)], measure.Settings(**QUICK, cpu=core))
    assert seen == [{core}] and report["settings"]["cpu"] == core
    assert os.sched_getaffinity(0) == before
    with pytest.raises(RuntimeError), measure.pinned(core):
        raise RuntimeError("a failed measurement")
    assert os.sched_getaffinity(0) == before  # restored on errors too


def test_pinning_settings_are_checked() -> None:
    with pytest.raises(ValueError, match=r"cpu 4096 is not one this process may run on"):
        measure.Settings(threads=1, cpu=4096)
    with pytest.raises(ValueError, match="needs threads=1"):  # worker threads would share the one core
        measure.Settings(cpu=min(os.sched_getaffinity(0)))


def test_cpu_memory_meter_sees_rss_growth() -> None:
    with measure.MemoryMeter(torch.device("cpu")) as meter:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    assert block.sum() > 0
    assert 60 <= meter.peak_bytes / 2**20 < 200 and meter.kind == "cpu_rss_growth"


def test_cpu_memory_meter_sees_growth_into_heap_memory_freed_before() -> None:
    """Found as a flaky failure (peak 0 MiB for the 64 MiB block above) in full runs: glibc keeps freed heap memory
    resident and served the block from it, so the resident set did not grow. The meter returns free heap memory to
    the kernel at entry (malloc_trim)."""
    if not measure._release_free_heap():
        pytest.skip("needs glibc's malloc_trim: the heap-reuse this reproduces is glibc's")
    once = torch.ones(20 * 2**20 // 4)
    del once  # a freed mmapped chunk raises glibc's mmap threshold: the next 20 MiB tensors come from the heap
    heap = [torch.ones(20 * 2**20 // 4) for _ in range(10)]
    top = heap.pop()  # keeps the heap's top in use, so the 180 MiB freed below it stays resident
    del heap
    with measure.MemoryMeter(torch.device("cpu")) as meter:
        block = torch.ones(64 * 2**20 // 4)
    assert block.sum() > 0 and top.sum() > 0
    assert 60 <= meter.peak_bytes / 2**20 < 200


def test_cpu_memory_meter_is_not_fooled_by_garbage_collected_inside() -> None:
    """Found as a flaky failure (peak 0 MiB) in full runs: cyclic garbage left by earlier tests, freed by an
    automatic collection inside the block, lowered the RSS below the baseline taken at entry."""
    holder: dict = {"tensor": torch.ones(128 * 2**20 // 4)}
    holder["self"] = holder  # a cycle: only the garbage collector frees it
    del holder
    with measure.MemoryMeter(torch.device("cpu")) as meter:
        gc.collect()  # what an automatic collection would do at any allocation
        block = torch.ones(64 * 2**20 // 4)
    assert block.sum() > 0
    assert 60 <= meter.peak_bytes / 2**20 < 200


def test_cpu_memory_meter_is_not_fooled_by_file_pages_dropped_inside(tmp_path) -> None:
    """Found as a flaky failure (peak 0 MiB in both tests above) in a fresh clone's full run: the resident set also
    holds file pages (the data set caches are mapped with mmap), which leave it when a mapping goes or the kernel
    reclaims them; here a 128 MiB mapping goes inside the block, so the whole RSS ends below its baseline."""
    path = tmp_path / "pages.bin"
    path.write_bytes(bytes(128 * 2**20))
    mapped = np.memmap(path, mode="r")
    assert int(mapped.sum()) == 0           # every page read: resident, as file pages
    with measure.MemoryMeter(torch.device("cpu")) as meter:
        del mapped                          # unmapped: the resident set shrinks by 128 MiB
        block = torch.ones(64 * 2**20 // 4)
    assert block.sum() > 0
    assert 60 <= meter.peak_bytes / 2**20 < 200


def test_profiler_cache_is_hit_on_a_repeat(tmp_path) -> None:
    path = tmp_path / "cache.sqlite"
    profiler = Profiler(cache=path, batch_sizes=[1, 2], **QUICK)
    result = compile_source(NET)
    first = profiler.profile(result)
    assert first["cached"] is False and profiler.measured == 1
    assert [r["batch_size"] for r in first["results"]] == [1, 2] and first["results"][0]["median_ms"] > 0
    again = profiler.profile(compile_source(NET))
    assert again["cached"] is True and profiler.measured == 1 and profiler.cache.hits == 1
    assert again["results"] == first["results"]
    # the same network under another model name is the same architecture
    renamed = compile_source(NET.replace("model net", "model other"))
    assert profiler.profile(renamed)["cached"] is True
    # another architecture, or other settings, are measured
    assert profiler.profile(compile_source(NET, width=16))["cached"] is False and profiler.measured == 2
    bf16 = Profiler(cache=profiler.cache, batch_sizes=[1, 2], dtype="bf16", **QUICK)
    assert bf16.profile(result)["cached"] is False
    # the file keeps the reports for the next run (a new process would see the same)
    reopened = Profiler(cache=path, batch_sizes=(1, 2), **{**QUICK, "min_iters": 5, "max_iters": 5})
    assert reopened.profile(result)["cached"] is True and reopened.measured == 0
    assert len(ProfileCache(path)) == 3


def test_metrics_give_objective_values_at_a_batch_size() -> None:
    profiler = Profiler(batch_sizes=(1, 4), **QUICK)
    result = compile_source(NET)
    one, four = profiler.metrics(result), profiler.metrics(result, batch_size=4)
    assert set(one) == {"latency_ms", "latency_p90_ms", "throughput", "peak_mem_mb"}
    assert one["throughput"] == pytest.approx(1e3 / one["latency_ms"])
    assert four["throughput"] == pytest.approx(4e3 / four["latency_ms"])
    assert profiler.measured == 1  # both from one report
    with pytest.raises(ValueError, match="batch size 8 is not among the profiled ones"):
        profiler.metrics(result, batch_size=8)
    assert profiler(result.graph)["latency_ms"] == one["latency_ms"]  # a Graph works too (and hits the cache)


def test_out_of_memory_is_a_failed_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    profiler = Profiler(batch_sizes=(1,), **QUICK)

    def oom(*args: object, **kwargs: object) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(measure, "time_iterations", oom)
    report = profiler.profile(compile_source(NET))
    assert report["results"] == [{"batch_size": 1, "error": "out of memory: CUDA out of memory. Tried to allocate "
                                                            "2.00 GiB"}]
    with pytest.raises(MeasurementError, match="at batch size 1: out of memory"):
        profiler.metrics(compile_source(NET))


def test_train_mode_runs_an_optimizer_step() -> None:
    model = compile_source(NET).build()
    before = [p.detach().clone() for p in model.parameters()]
    report = measure.profile_module(model, [(3, 16, 16)], measure.Settings(train=True, batch_sizes=(2,), **QUICK))
    assert report["settings"]["train"] is True and model.training
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_fingerprints_separate_architectures_and_settings() -> None:
    a, b = compile_source(NET).graph, compile_source(NET, width=9).graph
    assert architecture_fingerprint(a) != architecture_fingerprint(b)
    assert architecture_fingerprint(a) == architecture_fingerprint(compile_source(NET).graph)
    s = measure.Settings(**QUICK)
    longer = dataclasses.replace(s, min_time_s=2.0, max_iters=100)
    assert cache_key(a, s) == cache_key(a, longer)  # how long it ran is not part of the key
    assert cache_key(a, s) != cache_key(a, dataclasses.replace(s, channels_last=True))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_report_uses_events_and_device_memory() -> None:
    report = Profiler(device="cuda", batch_sizes=(1, 8), dtype="fp16", channels_last=True, warmup=2,
                      min_time_s=0.05).profile(compile_source(NET))
    assert report["device"]["type"] == "cuda" and report["versions"]["cuda"]
    assert all(r["peak_mem_kind"] == "cuda_max_memory_allocated" and r["peak_mem_mb"] > 0
               for r in report["results"])


def test_analytic_costs_count_params_macs_and_live_activations() -> None:
    from compiler.backends.summary import analytic_costs
    result = compile_source("""
    model tiny() {
        input x: [4, 8, 8]
        y = x -> conv(4, 3) -> relu
        output (x, y) -> add -> flatten -> linear(3)
    }
    """)
    costs = analytic_costs(result.graph, batch_size=2)
    assert costs["params"] == (4 * 4 * 9 + 4) + (256 * 3 + 3)
    assert costs["macs"] == 2 * (256 * 4 * 9 + 256 * 3)
    # live at the add: x, the conv output (relu runs in place on it) and the sum: 3 x 256 elements
    assert costs["inference_activation_peak_mb"] == 3 * 256 * 2 * 4 / 2**20
    assert result.summary["inference_activation_peak_mb"]["fp32_batch32"] == round(3 * 256 * 32 * 4 / 2**20, 3)
    # the training estimate keeps every fresh output for backward: conv, relu, add, linear (flatten is a view)
    assert costs["train_activation_memory_mb"] == (256 + 256 + 256 + 3) * 2 * 4 / 2**20


def test_a_profile_cache_file_that_is_no_database_is_a_located_error(tmp_path) -> None:
    from compiler.errors import ArchError
    path = tmp_path / "profile_cache.sqlite"
    path.write_bytes(b"this is not an SQLite file, just text " * 100)
    with pytest.raises(ArchError) as info:
        ProfileCache(path)
    assert str(info.value).startswith(f"{path}: error: cannot use it as the profile cache")
    assert "delete this one" in info.value.hint
