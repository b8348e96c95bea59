# Latency and memory measurement of a built nn.Module: the one timing loop of the project.
#
# The in-process profiler (search/profiling) imports this module, and every generated profile.py includes this
# file whole (compiler/backends/harness.py), so both measure in exactly the same way. It must therefore import
# only the standard library and torch, and hold no docstring or `from __future__` import (it is pasted after
# profile.py's own).
import argparse
import contextlib
import ctypes
import gc
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
REPORT_VERSION = 2
CUDA_BLOCK_S = 0.01   # default timed block on a GPU: one event per ~10 ms keeps the events' cost below 0.1 %
MIN_BLOCKS = 5        # fewest samples a measurement is split into (when it has that many iterations)


@dataclass(frozen=True)
class Settings:
    """What to measure and how long. Timing is adaptive: after warming up (at least ``warmup`` iterations and
    ``warmup_s`` seconds), it runs enough iterations to fill ``min_time_s``, within [min_iters, max_iters].

    Iterations run back to back and are timed in blocks of about ``block_time_s`` each (one clock reading or CUDA
    event per block boundary): a sample is a block's mean time per iteration. On a GPU a network that is bound by
    the host's kernel launches would otherwise be slowed by the timing itself (event records cost host time on
    every iteration); on the CPU a clock reading is ~0.1 us, so by default every iteration is its own block.
    """

    device: str = "cpu"
    batch_sizes: tuple[int, ...] = (1,)
    dtype: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    train: bool = False            # forward + backward + optimizer step instead of inference
    threads: int | None = None     # CPU threads (torch.set_num_threads); None leaves torch's default
    clock: str = "wall"            # "wall", or on the CPU with threads=1 "thread": the thread's CPU time, which
                                   # leaves out time the OS gave other processes (for shared machines)
    warmup: int = 5
    warmup_s: float = 0.1
    min_time_s: float = 0.5
    min_iters: int = 10
    max_iters: int = 10000
    block_time_s: float | None = None  # None: 0.01 s on CUDA, 0 (each iteration timed alone) on the CPU
    cpu: int | None = None         # pin the measuring thread to this CPU core while timing (Linux): a GPU network
                                   # bound by kernel launches runs at the speed of the one core issuing them

    def __post_init__(self) -> None:
        problems = []
        if self.dtype not in DTYPES:
            problems.append(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            problems.append(f"batch sizes must be positive integers, got {list(self.batch_sizes)}")
        if self.min_iters < 1 or self.max_iters < self.min_iters:
            problems.append(f"need 1 <= min_iters <= max_iters, got {self.min_iters} and {self.max_iters}")
        if self.warmup < 0 or self.warmup_s < 0 or self.min_time_s < 0 or (self.block_time_s or 0) < 0:
            problems.append("warmup, warmup_s, min_time_s and block_time_s must not be negative")
        if self.threads is not None and self.threads < 1:
            problems.append(f"threads must be positive, got {self.threads}")
        if self.clock not in ("wall", "thread"):
            problems.append(f"clock must be wall or thread, got {self.clock!r}")
        elif self.clock == "thread" and (self.device != "cpu" or self.threads != 1):
            problems.append("clock='thread' measures CPU time of one thread: it needs device='cpu' and threads=1")
        if self.cpu is not None:
            allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
            if self.cpu not in allowed:
                problems.append(f"cpu {self.cpu} is not one this process may run on ({_cpu_ranges(allowed)})"
                                if allowed else "cpu pinning needs Linux (os.sched_setaffinity)")
            if self.device == "cpu" and self.threads != 1:
                problems.append("cpu pinning on the CPU device needs threads=1 (other threads would share its core)")
        if self.device.split(":")[0] not in ("cpu", "cuda"):
            problems.append(f"device must be cpu or cuda (optionally cuda:N), got {self.device!r}")
        if problems:
            raise ValueError("invalid profiling settings: " + "; ".join(problems))

    def key(self) -> dict[str, Any]:
        """The settings that change a measurement's meaning (cache keys leave out how long it ran)."""
        return {"device": self.device, "batch_sizes": list(self.batch_sizes), "dtype": self.dtype,
                "channels_last": self.channels_last, "compile": self.compile, "train": self.train,
                "threads": self.threads, "clock": self.clock}

    def block_seconds(self) -> float:
        if self.block_time_s is not None:
            return self.block_time_s
        return CUDA_BLOCK_S if self.device.startswith("cuda") else 0.0


def _cpu_ranges(cpus: Sequence[int]) -> str:
    return ",".join(str(c) for c in cpus) if len(cpus) < 8 else f"{cpus[0]}-{cpus[-1]}"


@contextlib.contextmanager
def pinned(cpu: int | None):
    """Run the block with the calling thread on one CPU core, then restore its affinity (nothing when None)."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)  # pid 0: the calling thread on Linux; threads started inside inherit it
    torch.ones(1 << 16).sum()  # start torch's CPU worker threads first, or they would all share the pinned core
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class HostEvent:
    """The CPU's stand-in for ``torch.cuda.Event``: ``record()`` reads the host clock, as the CPU runs ops
    synchronously. One timing loop then serves both devices."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.at = math.nan

    def record(self) -> None:
        self.at = self.clock()

    def elapsed_time(self, end: "HostEvent") -> float:
        return (end.at - self.at) * 1e3


def make_event(device: torch.device, settings: Settings) -> Any:
    if device.type == "cuda":
        return torch.cuda.Event(enable_timing=True)
    return HostEvent(time.thread_time if settings.clock == "thread" else time.perf_counter)


@dataclass(frozen=True)
class Timing:
    """Latency samples in ms: each the mean time per iteration of one block of ``block_iters`` back-to-back
    iterations."""

    samples_ms: list[float]
    block_iters: int

    @property
    def iters(self) -> int:
        return len(self.samples_ms) * self.block_iters


def warm_up(step: Callable[[], Any], device: torch.device, settings: Settings) -> float:
    """Run ``step`` until warm (at least one call); the typical synchronized seconds per call."""
    start = time.perf_counter()
    warm: list[float] = []
    while len(warm) < max(settings.warmup, 1) or time.perf_counter() - start < settings.warmup_s:
        t0 = time.perf_counter()
        step()
        synchronize(device)
        warm.append(time.perf_counter() - t0)
    return percentile(warm[1:] or warm, 50)  # the first call may include one-off work (torch.compile)


def time_iterations(step: Callable[[], Any], device: torch.device, settings: Settings) -> Timing:
    """Time ``step()`` after warming up: CUDA events on a GPU, the host clock on the CPU.

    The iteration count comes from the warm-up's synchronized time per call (so a GPU queue never runs far ahead
    of the clock); iterations then run back to back, with one event at each block boundary, and the device is
    synchronized once at the end.
    """
    estimate_s = warm_up(step, device, settings)
    wanted = math.ceil(settings.min_time_s / estimate_s) if estimate_s > 0 else settings.max_iters
    iters = max(settings.min_iters, min(settings.max_iters, wanted))
    block_s = settings.block_seconds()
    per_block = max(1, math.ceil(block_s / estimate_s)) if block_s > 0 and estimate_s > 0 else 1
    per_block = min(per_block, max(1, iters // MIN_BLOCKS))  # enough samples for a median and a p90
    blocks = max(1, iters // per_block)
    marks = [make_event(device, settings) for _ in range(blocks + 1)]
    marks[0].record()
    for mark in marks[1:]:
        for _ in range(per_block):
            step()
        mark.record()
    synchronize(device)
    return Timing([a.elapsed_time(b) / per_block for a, b in zip(marks, marks[1:])], per_block)


def sleep_device(device: torch.device, ms: float) -> None:
    """Keep a GPU busy for about ``ms`` milliseconds (a spinning kernel); a no-op on the CPU."""
    if device.type == "cuda" and ms > 0:
        torch.cuda._sleep(int(ms * _sleep_cycles_per_ms(device)))


_CYCLES_PER_MS: dict[str, float] = {}


def _sleep_cycles_per_ms(device: torch.device) -> float:
    """The GPU's spin-kernel speed, measured once per device (clock rates are not reported portably)."""
    key = str(device)
    if key not in _CYCLES_PER_MS:
        cycles = 10_000_000
        torch.cuda._sleep(1000)  # load the kernel
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.cuda._sleep(cycles)
        end.record()
        synchronize(device)
        _CYCLES_PER_MS[key] = cycles / max(start.elapsed_time(end), 1e-3)
    return _CYCLES_PER_MS[key]


def time_host_and_device(step: Callable[[], Any], device: torch.device, settings: Settings,
                         calls: int = 32, bursts: int = 5) -> tuple[float, float]:
    """(host ms, device ms) per call of ``step``, medians over ``bursts``.

    A GPU runs kernels asynchronously: a call costs the host the time to issue it and the device the time to run
    it, and a network's latency depends on both (``predictor.py``). To separate them, the device is held busy by
    a spin kernel while the host issues a burst of ``calls``: the host clock then sees only issuing, and the
    events around the burst see the kernels run back to back. If the device ran dry before the host finished
    issuing (``start.query()``), the burst is repeated with a longer spin; after a good burst the spin is sized by
    the host time it measured. On the CPU both figures are the same synchronous time, through the same code.
    """
    estimate_ms = warm_up(step, device, settings) * 1e3
    host: list[float] = []
    work: list[float] = []
    spin_ms = 2.0 * calls * estimate_ms + 1.0
    clock = time.thread_time if settings.clock == "thread" else time.perf_counter
    while len(host) < bursts:
        synchronize(device)
        sleep_device(device, spin_ms)
        start, end = make_event(device, settings), make_event(device, settings)
        start.record()
        t0 = clock()
        for _ in range(calls):
            step()
        issued_ms = (clock() - t0) * 1e3
        still_busy = device.type != "cuda" or not start.query()
        end.record()
        synchronize(device)
        if not still_busy:
            spin_ms *= 2
            if spin_ms > 60_000:
                raise RuntimeError("the GPU kept up with the host issuing calls even behind a 60 s spin kernel")
            continue
        host.append(issued_ms / calls)
        work.append(start.elapsed_time(end) / calls)
        spin_ms = 2.0 * issued_ms + 1.0  # the first spin was sized by synchronized calls: far too long for big ops
    return percentile(host, 50), percentile(work, 50)


# ---- memory -------------------------------------------------------------------------------------
def _rss_bytes() -> int:
    """Current resident set size (Linux /proc; elsewhere the peak is the best the OS tells)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return _peak_rss_bytes()


def _status_bytes(field: str) -> int | None:
    """A memory figure of /proc/self/status (Linux; given in KiB there), None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass  # not Linux
    return None


def _anon_rss_bytes() -> int | None:
    """The anonymous part of the resident set (Linux >= 4.5: RssAnon), where tensors live; None where unknown.
    The rest is file pages, e.g. a data set cache mapped with mmap, which the kernel drops and maps again at any
    time: growth measured on the whole RSS can lose a block's allocation to such a drop."""
    return _status_bytes("RssAnon")


def _release_free_heap() -> bool:
    """Hand the C heap's free memory back to the kernel (glibc's malloc_trim); False where there is no such call.
    glibc keeps memory freed in its heap resident and serves later allocations from it, so without this a 64 MiB
    tensor allocated inside the block can show no RSS growth at all (found as peak 0 MiB in full test runs, after
    earlier tests had freed heap memory)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc (musl, macOS, Windows)
        return False
    trim(0)
    return True


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); False where the peak cannot be reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource
    except ImportError:  # Windows: no peak figure from the standard library
        return 0
    scale = 1 if platform.system() == "Darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class MemoryMeter:
    """Peak memory of what runs inside ``with meter:``: CUDA peak allocated bytes, or RSS growth on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda_max_memory_allocated" if device.type == "cuda" else "cpu_rss_growth"
        self.peak_bytes = 0

    def __enter__(self) -> "MemoryMeter":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            gc.collect()  # free garbage now: collected inside the block, it would hide the block's growth
            _release_free_heap()  # and return free heap memory, which the block could otherwise reuse unseen
            self._base, self._anon_base = _rss_bytes(), _anon_rss_bytes()
            if not _reset_peak_rss():
                self.kind = "cpu_rss_growth_upper_bound"  # the process-wide peak cannot be reset here
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            # The current RSS bounds the peak from below: some kernels (gVisor) do not raise the peak
            # mark again after it was reset, so the mark alone can read below the block's live memory; and the
            # anonymous part's growth is not lowered by file pages the kernel dropped meanwhile.
            anon = _anon_rss_bytes()
            anon_growth = anon - self._anon_base if anon is not None and self._anon_base is not None else 0
            self.peak_bytes = max(0, _peak_rss_bytes() - self._base, _rss_bytes() - self._base, anon_growth)


# ---- one model ----------------------------------------------------------------------------------
def make_inputs(input_shapes: Sequence[Sequence[int]], batch_size: int, device: torch.device,
                settings: Settings) -> list[torch.Tensor]:
    """Random inputs of the model's per-sample shapes, in the settings' dtype and memory format."""
    tensors = []
    for shape in input_shapes:
        x = torch.randn(batch_size, *shape, device=device, dtype=DTYPES[settings.dtype])
        if settings.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        tensors.append(x)
    return tensors


def prepare_module(model: torch.nn.Module, settings: Settings) -> tuple[torch.nn.Module, Callable[..., Any]]:
    """Move ``model`` (in place) to the device, dtype and layout; return it and the callable to time."""
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    device = torch.device(settings.device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # CUDA events record on the current device's stream
    model = model.to(device=device, dtype=DTYPES[settings.dtype])
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train(settings.train)
    return model, (torch.compile(model) if settings.compile else model)


def make_step(model: torch.nn.Module, runner: Callable[..., Any], inputs: Sequence[torch.Tensor],
              settings: Settings) -> Callable[[], Any]:
    if not settings.train:
        return lambda: runner(*inputs)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        out = runner(*inputs)  # a tuple in training mode when the model has auxiliary outputs
        loss = sum(o.float().mean() for o in out) if isinstance(out, tuple) else out.float().mean()
        loss.backward()
        optimizer.step()
    return train_step


def measure_batch(model: torch.nn.Module, runner: Callable[..., Any], input_shapes: Sequence[Sequence[int]],
                  batch_size: int, settings: Settings) -> dict[str, Any]:
    """Latency statistics and peak memory at one batch size (an out-of-memory is reported, not raised)."""
    device = torch.device(settings.device)
    meter = MemoryMeter(device)
    try:
        with meter, torch.set_grad_enabled(settings.train):
            inputs = make_inputs(input_shapes, batch_size, device, settings)
            timing = time_iterations(make_step(model, runner, inputs, settings), device, settings)
    except torch.cuda.OutOfMemoryError as err:
        torch.cuda.empty_cache()
        return {"batch_size": batch_size, "error": f"out of memory: {str(err).splitlines()[0]}"}
    times = timing.samples_ms
    median = percentile(times, 50)
    return {
        "batch_size": batch_size,
        "median_ms": median,
        "p90_ms": percentile(times, 90),
        "mean_ms": sum(times) / len(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "iters": timing.iters,
        "block_iters": timing.block_iters,  # iterations per timed block: each statistic is over block means
        "throughput": batch_size * 1e3 / median if median > 0 else None,  # samples per second
        "peak_mem_mb": meter.peak_bytes / 2**20,
        "peak_mem_kind": meter.kind,
    }


def device_info(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"type": "cuda", "name": props.name, "capability": f"{props.major}.{props.minor}",
                "memory_gb": round(props.total_memory / 2**30, 1)}
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass  # not Linux: keep platform's name
    return {"type": "cpu", "name": name, "threads": torch.get_num_threads(), "cores": os.cpu_count()}


def versions() -> dict[str, Any]:
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": cudnn,
            "python": platform.python_version()}


def profile_module(model: torch.nn.Module, input_shapes: Sequence[Sequence[int]], settings: Settings,
                   name: str = "model") -> dict[str, Any]:
    """Measure ``model`` (moved in place to the settings' device/dtype) at each batch size; a JSON-able report."""
    device = torch.device(settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu")
    model, runner = prepare_module(model, settings)
    with pinned(settings.cpu):
        results = [measure_batch(model, runner, input_shapes, b, settings) for b in settings.batch_sizes]
    return {"version": REPORT_VERSION, "model": name, "input_shapes": [list(s) for s in input_shapes],
            "device": device_info(device), "versions": versions(), "settings": asdict(settings),
            "results": results}


def format_report(report: dict[str, Any]) -> str:
    dev, s = report["device"], report["settings"]
    mode = "train step" if s["train"] else "inference"
    head = (f"{report['model']} on {dev['name']} ({s['device']}), {s['dtype']}"
            f"{', channels_last' if s['channels_last'] else ''}{', torch.compile' if s['compile'] else ''}, {mode}; "
            f"torch {report['versions']['torch']}")
    lines = [head, f"{'batch':>6} {'median ms':>10} {'p90 ms':>10} {'samples/s':>11} {'peak MB':>9} {'iters':>6} "
                   f"{'per block':>9}"]
    for r in report["results"]:
        if "error" in r:
            lines.append(f"{r['batch_size']:>6} {r['error']}")
        else:
            throughput = r["throughput"] or math.nan
            lines.append(f"{r['batch_size']:>6} {r['median_ms']:>10.3f} {r['p90_ms']:>10.3f} {throughput:>11.1f} "
                         f"{r['peak_mem_mb']:>9.1f} {r['iters']:>6} {r['block_iters']:>9}")
    return "\n".join(lines)


def settings_from_argv(argv: Sequence[str] | None = None) -> tuple[Settings, str | None]:
    """The command line of profile.py -> (Settings, JSON output path or None)."""
    parser = argparse.ArgumentParser(description="Measure the latency and peak memory of the generated model.")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--batch-sizes", default=None,
                        help="comma-separated, e.g. 1,32,256 (default: 1,32,256 on cuda, 1,32 on cpu)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format for model and input")
    parser.add_argument("--compile", action="store_true", help="time torch.compile(model)")
    parser.add_argument("--train", action="store_true", help="time forward + backward + SGD step")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall",
                        help="CPU only, with --threads 1: 'thread' times the thread's CPU time (shared machines)")
    parser.add_argument("--warmup", type=int, default=Settings.warmup, help="minimum warm-up iterations")
    parser.add_argument("--min-time", type=float, default=Settings.min_time_s, help="seconds of timed iterations")
    parser.add_argument("--min-iters", type=int, default=Settings.min_iters)
    parser.add_argument("--max-iters", type=int, default=Settings.max_iters)
    parser.add_argument("--block-time", type=float, default=None,
                        help="seconds per timed block of back-to-back iterations (default: 0.01 on cuda, 0 on cpu)")
    parser.add_argument("--cpu", type=int, default=None, metavar="N",
                        help="pin the timing thread to CPU core N (steadier launch-bound GPU timings)")
    parser.add_argument("--json", default=None, metavar="OUT.json", help="also write the report as JSON")
    args = parser.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    sizes = args.batch_sizes or ("1,32,256" if device.startswith("cuda") else "1,32")
    try:
        batch_sizes = tuple(int(b) for b in sizes.split(",") if b.strip())
        settings = Settings(device=device, batch_sizes=batch_sizes, dtype=args.dtype,
                            channels_last=args.channels_last, compile=args.compile, train=args.train,
                            threads=args.threads, clock=args.clock, warmup=args.warmup, min_time_s=args.min_time,
                            min_iters=args.min_iters, max_iters=args.max_iters, block_time_s=args.block_time,
                            cpu=args.cpu)
    except ValueError as err:
        parser.error(str(err))
    return settings, args.json
