"""`root/{train,test}/<class>/<image>` trees (or a .tar/.tar.gz/.tar.xz archive of one), decoded once and cached.

The first load decodes every image into one uint8 tensor file in the cache folder, keyed by the source (archive
bytes, or the tree's file list with sizes and times) and the decoding options; later loads memory-map that file.
"""
from __future__ import annotations

import bisect
import logging
import lzma
import tarfile
import time
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from compiler.config_values import ConfigError, check_value
from search.data.base import DataError, DataSplits, Split, make_splits
from search.data.cache import cache_key, cache_root, file_digest, load_tensors, save_tensors, tree_fingerprint
from search.data.decode import MAX_SIDE, DecodeError, decode_many

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")
SPLITS = ("train", "test")
CACHE_VERSION = 1
LAYOUT_HINT = "expected root/train/<class>/<image> and root/test/<class>/<image> (a folder or a .tar[.gz|.xz] of one)"

MAX_FILE_BYTES = 256 * 2**20   # one image file of an archive is read whole into memory: at most this
END_CHECK_CHUNK = 2**20

# split -> class -> [(file name, bytes or path)]
Listing = dict[str, dict[str, list[tuple[str, bytes | str]]]]
Limits = Mapping[str, int | None]   # split -> images kept per class (the first by file name); None: all


def _is_image_entry(parts: Sequence[str]) -> bool:
    """``.../<split>/<class>/<image>`` (an archive may wrap the tree in a top folder)."""
    return len(parts) >= 3 and parts[-3] in SPLITS and Path(parts[-1]).suffix.lower() in IMAGE_SUFFIXES


def _list_tree(root: Path) -> Listing:
    listing: Listing = defaultdict(lambda: defaultdict(list))
    for split in SPLITS:
        for path in (root / split).glob("*/*"):
            if path.is_file() and _is_image_entry(path.parts):
                listing[split][path.parts[-2]].append((path.name, str(path)))
    return listing


def _list_archive(path: Path, limits: Limits) -> Listing:
    """The archive's images; of each class only the bytes of those `_select` will keep (the first `limit` by file name),
    so that a per-class limit also bounds the memory of reading a large archive."""
    kept: dict[str, dict[str, list[tuple[str, int, bytes]]]] = defaultdict(lambda: defaultdict(list))
    try:
        with tarfile.open(path) as archive:
            for index, member in enumerate(archive):
                parts = member.name.split("/")
                if not (member.isfile() and _is_image_entry(parts)):
                    continue
                if member.size > MAX_FILE_BYTES:
                    raise DataError(f"'{member.name}' holds {member.size:,} bytes, more than an image file may "
                                    f"({MAX_FILE_BYTES:,})", path)
                limit, entries = limits.get(parts[-3]), kept[parts[-3]][parts[-2]]
                key = (parts[-1], index)   # the order of _select's stable sort by file name
                if limit is not None and len(entries) >= limit and key >= entries[-1][:2]:
                    continue
                bisect.insort(entries, (*key, archive.extractfile(member).read()))  # type: ignore[union-attr]
                if limit is not None and len(entries) > limit:
                    entries.pop()
            _check_read_to_its_end(archive, path, len(archive.members))
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error) as err:
        raise DataError(f"cannot read the archive (damaged?): {type(err).__name__}: {err}", path) from err
    listing: Listing = defaultdict(dict)
    for split, classes in kept.items():
        for cls, entries in classes.items():
            listing[split][cls] = [(name, blob) for name, _, blob in entries]
    return listing


def _check_read_to_its_end(archive: tarfile.TarFile, path: Path, entries: int) -> None:
    """tarfile ends its listing quietly at a damaged member header, which would make a smaller data set (and cache
    it): after the end-of-archive marker only zero padding may follow. Reading to the end also makes gzip and xz
    check their checksums."""
    assert archive.fileobj is not None
    while chunk := archive.fileobj.read(END_CHECK_CHUNK):
        if chunk.count(0) != len(chunk):
            raise DataError(f"the archive is damaged: its listing ends at offset {archive.offset:,}, before its end "
                            f"(a broken member header); {entries:,} entries were read", path)


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _select(per_class: Mapping[str, list[tuple[str, bytes | str]]], classes: Sequence[str],
            limit: int | None) -> tuple[list[bytes | str], list[int], list[str]]:
    """The sources, labels and names (class/file) of the first ``limit`` images of each class by file name."""
    sources, labels, names = [], [], []
    for label, cls in enumerate(classes):
        for name, source in sorted(per_class.get(cls, []), key=lambda item: item[0])[:limit]:
            sources.append(source)
            labels.append(label)
            names.append(f"{cls}/{name}")
    return sources, labels, names


def _decode_split(sources: list[bytes | str], names: list[str], mode: str, size: tuple[int, int] | None,
                  workers: int | None, where: Path) -> torch.Tensor:
    try:
        arrays = decode_many(sources, mode, size, workers, names)
    except DecodeError as err:
        raise DataError(f"cannot use the image '{err.name}': {err.reason}", where) from err
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"images of different sizes ({', '.join(str(s[:2]) for s in sorted(shapes)[:4])}, ...)",
                        where, hint="set dataset.image_size=[H,W] to resize them while decoding")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _build(root: Path, listing: Listing, mode: str, size: tuple[int, int] | None, max_per_class: int | None,
           max_test_per_class: int | None, workers: int | None) -> dict[str, Any]:
    for split in SPLITS:
        if not listing.get(split):
            raise DataError(f"no '{split}' images found", root, hint=LAYOUT_HINT)
    classes = sorted(listing["train"])
    unknown = sorted(set(listing["test"]) - set(classes))
    if unknown:
        raise DataError(f"test classes {unknown} have no training images", root, hint=LAYOUT_HINT)
    result: dict[str, Any] = {"version": CACHE_VERSION, "classes": classes}
    for split, limit in (("train", max_per_class), ("test", max_test_per_class)):
        sources, labels, names = _select(listing[split], classes, limit)
        names = [f"{split}/{name}" for name in names]
        result[f"{split}_images"] = _decode_split(sources, names, mode, size, workers, root)
        result[f"{split}_labels"] = torch.tensor(labels, dtype=torch.int64)
    return result


def _fingerprint(root: Path) -> str:
    return file_digest(root) if _is_archive(root) else tree_fingerprint(root)


def read_imagefolder(root: str | Path, *, cache_dir: str | Path | None = None, mode: str = "RGB",
                     image_size: Iterable[int] | None = None, max_per_class: int | None = None,
                     max_test_per_class: int | None = None, workers: int | None = None) -> dict[str, Any]:
    """Decoded (cached) tensors: {'classes', 'train_images', 'train_labels', 'test_images', 'test_labels'}."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"no such folder or archive: '{root.resolve()}'", root, hint=f"set dataset.root; {LAYOUT_HINT}")
    if root.is_file() and not _is_archive(root):
        raise DataError(f"'{root}' is a file but not a tar archive ({', '.join(ARCHIVE_SUFFIXES)})", root)
    size = tuple(int(v) for v in image_size) if image_size is not None else None
    key = cache_key(version=CACHE_VERSION, source=_fingerprint(root), mode=mode, size=size,
                    max_per_class=max_per_class, max_test_per_class=max_test_per_class)
    path = cache_root(cache_dir) / "imagefolder" / f"{root.name.split('.')[0]}-{key}.pt"
    if path.exists() and (cached := load_tensors(path)) is not None:
        return cached
    start = time.perf_counter()
    limits = {"train": max_per_class, "test": max_test_per_class}
    listing = _list_archive(root, limits) if _is_archive(root) else _list_tree(root)
    data = _build(root, listing, mode, size, max_per_class, max_test_per_class, workers)  # type: ignore[arg-type]
    try:
        save_tensors(data, path)
    except OSError as err:  # a cache_dir that is a file, or not writable
        raise DataError(f"cannot write the decoded images to the cache: {err}", path.parent,
                        hint="set dataset.cache_dir (or $AUTOML_CODEGEN_CACHE) to a writable folder") from err
    log.info("decoded %d images from %s in %.1f s; cached in %s", len(data["train_labels"]) +
             len(data["test_labels"]), root, time.perf_counter() - start, path)
    return data


MODES = ("RGB", "L")   # the Pillow modes a data set is decoded to: 3 channels or 1
MAX_IMAGE_SIDE = MAX_SIDE   # also the largest dataset.image_size


def check_options(mode: str, image_size: Any, max_per_class: Any, max_test_per_class: Any, workers: Any) -> None:
    if mode not in MODES:
        raise ConfigError("dataset.mode", f"unknown mode '{mode}'", hint="RGB (3 channels) or L (grey, 1 channel)")
    if image_size is not None and (len(image_size) != 2 or min(image_size) < 1 or max(image_size) > MAX_IMAGE_SIDE):
        raise ConfigError("dataset.image_size",
                          f"expected [H, W] (two sizes from 1 to {MAX_IMAGE_SIDE:,}) or null, not {image_size!r}")
    for key, value in (("max_per_class", max_per_class), ("max_test_per_class", max_test_per_class),
                       ("workers", workers)):
        if value is not None:
            check_value(value, int, f"dataset.{key}", minimum=1, hint="a number >= 1, or null")


def load_imagefolder(root: str | Path, name: str = "imagefolder", *, cache_dir: str | Path | None = None,
                     mode: str = "RGB", image_size: Iterable[int] | None = None, max_per_class: int | None = None,
                     max_test_per_class: int | None = None, val_size: float | int = 0.1, val_seed: int = 0,
                     augment: Mapping[str, Any] | None = None, workers: int | None = None) -> DataSplits:
    """An image-folder data set; validation is carved from its train folder (``val_size``, ``val_seed``)."""
    check_options(mode, image_size, max_per_class, max_test_per_class, workers)
    data = read_imagefolder(root, cache_dir=cache_dir, mode=mode, image_size=image_size, max_per_class=max_per_class,
                            max_test_per_class=max_test_per_class, workers=workers)
    return make_splits(name, Split(data["train_images"], data["train_labels"]),
                       Split(data["test_images"], data["test_labels"]), data["classes"], val_size=val_size,
                       val_seed=val_seed, augment=augment)
