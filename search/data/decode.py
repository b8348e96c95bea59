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


MAX_SIDE = 4096   # an image kept at its own size (no resize) may be at most this wide and high: decoded images are
#                   held in memory as uint8 (48 MiB per RGB image at this size)


class DecodeError(ValueError):
    """An image Pillow cannot decode, or too large to keep; ``name`` says which (picklable: raised in workers)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(name, reason)
        self.name, self.reason = name, reason

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


def decode_image(source: bytes | str, mode: str, size: tuple[int, int] | None, name: str = "") -> np.ndarray:
    """One image (encoded bytes or a file path) -> uint8 [H, W, C]; resized to ``size`` = (H, W) when given. Raises
    DecodeError naming ``name`` (or the path) for what Pillow cannot read, a decompression bomb, or an image over
    ``MAX_SIDE`` kept at its size; the size is checked from the header, before the pixels are decoded."""
    name = name or str(source if isinstance(source, str) else "<bytes>")
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else Path(source)) as img:
            if size is None and max(img.size) > MAX_SIDE:
                raise DecodeError(name, f"{img.size[0]}x{img.size[1]} pixels, more than {MAX_SIDE:,} a side "
                                        "(set dataset.image_size=[H,W] to resize while decoding)")
            img = img.convert(mode)
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as err:   # UnidentifiedImageError is an OSError
        if isinstance(err, DecodeError):
            raise
        raise DecodeError(name, f"not an image Pillow can decode ({type(err).__name__}: {err})") from err
    return array[:, :, None] if array.ndim == 2 else array


def _decode_star(args: tuple[bytes | str, str, tuple[int, int] | None, str]) -> np.ndarray:
    return decode_image(*args)


def decode_many(sources: Sequence[bytes | str], mode: str, size: tuple[int, int] | None,
                workers: int | None = None, names: Sequence[str] | None = None) -> list[np.ndarray]:
    """Every image, in order; ``names`` (one per source) name an image that cannot be decoded (DecodeError)."""
    jobs = [(s, mode, size, n) for s, n in zip(sources, names or [""] * len(sources))]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(jobs) < PARALLEL_FROM:
        return [_decode_star(j) for j in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_decode_star, jobs, chunksize=256))
