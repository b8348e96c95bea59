"""Image decoding with Pillow, in worker processes when there are many images. Runs once per data set."""
from __future__ import annotations

import io
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

PARALLEL_FROM = 2000   # fewer images than this decode faster in-process than with a pool's start-up


def decode_image(source: bytes | str, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """One image (encoded bytes or a file path) -> uint8 [H, W, C]; resized to ``size`` = (H, W) when given."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else Path(source)) as img:
        img = img.convert(mode)
        if size is not None and img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        array = np.asarray(img, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def _decode_star(args: tuple[bytes | str, str, tuple[int, int] | None]) -> np.ndarray:
    return decode_image(*args)


def decode_many(sources: Sequence[bytes | str], mode: str, size: tuple[int, int] | None,
                workers: int | None = None) -> list[np.ndarray]:
    jobs = [(s, mode, size) for s in sources]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(jobs) < PARALLEL_FROM:
        return [_decode_star(j) for j in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_decode_star, jobs, chunksize=256))
