"""How long JPEG CIFAR-10 takes to load: the one-off decode into the cache, then loads from the cache.

    python bench/imagefolder_cache.py                         # shared/data/cifar10-jpeg.tar.xz, 5 processes
    python bench/imagefolder_cache.py --repeats 10 --cache-dir ~/.cache/automl-codegen --val-size 0

The archive is decoded once into the cache folder (a fresh temporary one unless --cache-dir names one; a cache
already there is then used, and the decode is not timed). Each repeat is a fresh process that loads the data set
twice with `load_imagefolder` (the validation carve and normalisation statistics included): the first load of a
process (what a run pays) and a second one. Printed: median and spread (min-max) of each. Goal: a cached load
under 1 s (tests/test_data.py checks that the cache is used; the time is measured here).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _util import Stats, machine  # noqa: E402

CIFAR_JPEG = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.xz"
LOAD_TWICE = """
import sys, time
from search.data.imagefolder import load_imagefolder
for _ in range(2):
    start = time.perf_counter()
    load_imagefolder(sys.argv[1], "bench", cache_dir=sys.argv[2], val_size=int(sys.argv[3]))
    print(time.perf_counter() - start, flush=True)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=CIFAR_JPEG, help="an image folder or tar archive")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: a fresh temporary folder")
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes, each loading twice")
    parser.add_argument("--val-size", type=int, default=5000)
    args = parser.parse_args(argv)
    print(f"{args.root}; {machine()}")
    with tempfile.TemporaryDirectory(prefix="imagefolder_cache_") as tmp:
        cache = (args.cache_dir or Path(tmp)).expanduser()
        from search.data.imagefolder import read_imagefolder
        start = time.perf_counter()
        read_imagefolder(args.root, cache_dir=cache)  # decodes unless the cache already holds it
        print(f"decode (or cache hit) in this process: {time.perf_counter() - start:.1f} s; cache {cache}")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        firsts: list[float] = []
        seconds: list[float] = []
        for _ in range(args.repeats):
            proc = subprocess.run([sys.executable, "-c", LOAD_TWICE, str(args.root), str(cache), str(args.val_size)],
                                  env=env, cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"a load failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
            first, second = map(float, proc.stdout.split())
            firsts.append(first)
            seconds.append(second)
    for name, values in (("first load of a process", firsts), ("second load", seconds)):
        stats = Stats(tuple(values))
        print(f"{name:<24} median {stats.median:.3f} s  (min-max {stats.min:.3f}-{stats.max:.3f}, "
              f"{len(values)} processes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
