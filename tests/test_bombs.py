"""Resource bombs: tiny (or huge) hostile files are refused before the work they ask for, with a located error.

Each bomb runs in a child process under generous resource limits, so that a bomb doing its work fails rather than
passes: the address space is capped (RLIMIT_AS, as `prlimit --as` sets it; the in-process driver at what it has after
importing torch plus 1 GiB, the command-line at 4 GiB: importing torch maps about 3.1 GiB of address space on the dev
VM, 3 GB is too little), and each bomb in the driver may use CPU_LIMIT_S seconds of CPU time (RLIMIT_CPU: the kernel
kills the driver beyond it). The subprocess timeout guards against hangs. How fast and small the refusals are (CPU
seconds and resident-memory growth per bomb, median and spread over runs) is printed by bench/bomb_refusal.py.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI_ADDRESS_SPACE = 4 * 2**30
AS_HEADROOM = 2**30   # address space the in-process driver may add to what it has after importing torch
CPU_LIMIT_S = 10      # CPU seconds each bomb may use in the driver (a refusal takes well under one)

BOMBS: dict[str, tuple[str, str]] = {  # name -> (.arch source, the limit that must refuse it)
    "loop_1e9": ("model m() {\n  input x: [1, 4, 4]\n  for i in range(1000000000) { x = x -> relu }\n  output x\n}",
                 "max_loop_trips"),
    "repeat_1e8": ("model m() {\n  input x: [1, 4, 4]\n  output x -> relu * 100000000\n}", "max_repeat"),
    "blocks_10x10": ("\n".join(["block b0() { input x\n output x -> relu }"]
                               + [f"block b{i}() {{ input x\n output x -> b{i - 1} * 10 }}" for i in range(1, 10)]
                               + ["model m() { input x: [1, 4, 4]\n output x -> b9 * 10 }"]), "max_layers"),
    "nested_loops_of_lets": ("model m() {\n input x: [1, 4, 4]\n for i in range(10000) { for j in range(10000) {"
                             " let a = i + j } }\n output x\n}", "max_steps"),
    "pow_10_1e8": ("model m() {\n  input x: [1, 4, 4]\n  let a = 10 ** 100000000\n  output x\n}", "max_int_bits"),
    "pow_9_9_9": ("model m() {\n  input x: [1, 4, 4]\n  let a = 9 ** 9 ** 9\n  output x\n}", "max_int_bits"),
    "literal_1e6_digits": ("model m() {\n  input x: [1, 4, 4]\n  let a = " + "9" * 1_000_000 + "\n  output x\n}",
                           "max_source_bytes"),
    "literal_5000_digits": ("model m() {\n  input x: [1, 4, 4]\n  let a = " + "9" * 5000 + "\n  output x\n}",
                            "max_int_bits"),
    "sum_5000_terms": ("model m() {\n  input x: [1, 4, 4]\n  let a = " + " + ".join(["1"] * 5000) + "\n  output x\n}",
                       "max_depth"),
    "if_1000_nested": ("model m() {\n  input x: [1, 4, 4]\n" + "if true {\n" * 1000 + "x = x -> relu\n" + "}\n" * 1000
                       + "  output x\n}", "max_depth"),
    "blocks_chain_1000": ("\n".join(["block b0() { input x\n output x -> relu }"]
                                    + [f"block b{i}() {{ input x\n output x -> b{i - 1} }}" for i in range(1, 1000)]
                                    + ["model m() { input x: [1, 4, 4]\n output x -> b999 }"]), "max_depth"),
    "add_of_5000": ("model m() {\n  input x: [1, 4, 4]\n  output (" + ", ".join(["x"] * 5000) + ") -> add\n}",
                    "max_inputs"),
    "source_5MB_291k_layers": ("model m() {\n  input x: [1, 4, 4]\n" + "  x = x -> relu\n" * 291_000 + "  output x\n}",
                               "max_source_bytes"),
    "space_labels_10x12": ("\n".join(["block b0() { input x\n output x -> [relu | tanh] }"]
                                     + [f"block b{i}() {{ input x\n output x -> "
                                        + " -> ".join(f"b{i - 1}() as l{k}" for k in range(10)) + " }"
                                        for i in range(1, 12)]
                                     + ["model m() { input x: [1, 4, 4]\n output x -> b11 }"]), "max_decisions"),
    "conv_1e9_build": ("model m() {\n  input x: [3, 8, 8]\n  output x -> conv(1000000000, 3)\n}", "max_params"),
    "activations_build": ("model m() {\n  input x: [3, 4096, 4096]\n  output x -> conv(128, 3)\n}",
                          "max_activation_mb"),
}

DRIVER = r'''
import json, math, resource, sys, time
import torch
from compiler import ArchError, compile_source
from compiler.backends.runtime.measure import MemoryMeter
from compiler.space import load_space

headroom, cpu_limit = int(sys.argv[1]), int(sys.argv[2])

def vm_size():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0

resource.setrlimit(resource.RLIMIT_AS, (vm_size() + headroom, resource.getrlimit(resource.RLIMIT_AS)[1]))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a driver killed for its CPU time leaves no core file
compile_source("model warm() { input x: [1, 2, 2]\n output x -> relu }")  # the parser is built once per process
for name, text in json.load(sys.stdin).items():
    # cpu_limit more CPU seconds from here, then SIGXCPU kills the process; only the soft limit moves (a lowered
    # hard limit could not be raised again for the next bomb)
    used = resource.getrusage(resource.RUSAGE_SELF)
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    soft = math.ceil(used.ru_utime + used.ru_stime) + cpu_limit
    resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
    record = {"name": name, "room_bytes": resource.getrlimit(resource.RLIMIT_AS)[0] - vm_size()}
    with MemoryMeter(torch.device("cpu")) as meter:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        try:
            if name.startswith("space_"):
                load_space(text, name + ".arch")
            else:
                result = compile_source(text, name + ".arch")
                record.update(compiled=True, params=result.summary["params"])
                if name.endswith("_build"):
                    result.build()
            record["outcome"] = "ok"
        except ArchError as err:
            record.update(outcome="ArchError", message=str(err), line=err.span.line if err.span else None)
        except BaseException as err:
            record.update(outcome=type(err).__name__, message=str(err)[:300])
        record.update(cpu_s=time.process_time() - cpu0, wall_s=time.perf_counter() - wall0)
    record["rss_growth_mb"] = meter.peak_bytes / 2**20  # figures for bench/bomb_refusal.py; the tests ignore them
    print(json.dumps(record), flush=True)
'''


def run_driver(bombs: dict[str, str], cpu_limit_s: int = CPU_LIMIT_S) -> dict[str, dict]:
    """Each bomb's record from DRIVER, run in a fresh process under the limits above."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(AS_HEADROOM), str(cpu_limit_s)], input=json.dumps(bombs),
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    records = {r["name"]: r for r in map(json.loads, proc.stdout.splitlines())}
    died_in = next((name for name in bombs if name not in records), None)
    assert proc.returncode == 0 and died_in is None, (
        f"the driver died in bomb {died_in!r} with exit status {proc.returncode} (-{int(signal.SIGXCPU)}: it used up "
        f"its {cpu_limit_s} CPU seconds; -{int(signal.SIGKILL)}: killed)\n{proc.stderr[-3000:]}")
    return records


@pytest.fixture(scope="module")
def refusals() -> dict[str, dict]:
    return run_driver({name: text for name, (text, _) in BOMBS.items()})


@pytest.mark.parametrize("name", list(BOMBS))
def test_bomb_is_refused_within_the_limits_and_located(refusals: dict[str, dict], name: str) -> None:
    """A bomb that did its work would have been killed for CPU time or failed with MemoryError: refused first."""
    record = refusals[name]
    limit = BOMBS[name][1]
    assert record["outcome"] == "ArchError", record
    assert record["message"].startswith(f"{name}.arch:{record['line']}:") and record["line"] >= 1, record["message"]
    assert f"limits.{limit}=" in record["message"] and f"Limits({limit}=" in record["message"], record["message"]


def test_a_plain_compile_allocates_no_weights(refusals: dict[str, dict]) -> None:
    """conv(1000000000, 3) compiles, counting its 28e9 parameters (112 GB in fp32), with less address space left
    than that (RLIMIT_AS): so none were allocated. Only build() refuses it."""
    record = refusals["conv_1e9_build"]
    assert record.get("compiled") is True and record["params"] == 28_000_000_000, record
    assert 0 < record["room_bytes"] < record["params"] * 4, record


def _cap_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CLI_ADDRESS_SPACE, resource.getrlimit(resource.RLIMIT_AS)[1]))


@pytest.mark.parametrize("name,extra", [("blocks_10x10", []), ("sum_5000_terms", []),
                                        ("conv_1e9_build", ["export=[pt2]"])])
def test_bomb_on_the_command_line_exits_2_with_a_message(tmp_path: Path, name: str, extra: list[str]) -> None:
    arch = tmp_path / f"{name}.arch"
    arch.write_text(BOMBS[name][0])
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "compiler", f"arch={arch}", f"out_dir={tmp_path / 'out'}", *extra],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT,
                          preexec_fn=_cap_address_space)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith(f"{arch}:") and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"limits.{BOMBS[name][1]}=" in proc.stderr
    assert not (tmp_path / "out" / "model.py").exists()  # refused before anything was written
