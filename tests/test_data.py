"""Data sets (every conf/dataset config), the decoded-image cache, device-side loading and augmentation."""
from __future__ import annotations

import os
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

import search.data.imagefolder as imagefolder
from search.data import AugmentConfig, DataError, DeviceLoader, Split, load_dataset
from search.data.augment import Augmenter, cutout, random_translate
from search.data.base import carve_validation, channel_stats
from search.data.digits import load_digits_splits

ROOT = Path(__file__).resolve().parents[1]
CIFAR_JPEG = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.xz"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "emu": (30, 30, 200)}


def compose_dataset(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=[f"dataset={name}", *overrides]).dataset


def write_tree(root: Path, train: int = 4, test: int = 2, size: int = 6, suffix: str = ".png") -> Path:
    """root/{train,test}/<class>/<n>.png: solid colours with the image number in pixel (0, 0)."""
    for split, count in (("train", train), ("test", test)):
        for cls, colour in COLOURS.items():
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(count):
                pixels = np.full((size, size, 3), colour, dtype=np.uint8)
                pixels[0, 0] = n
                Image.fromarray(pixels).save(folder / f"{n:03d}{suffix}")
    return root


def write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format of the MNIST files: magic (0, 0, ubyte=8, ndim), big-endian sizes, then the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str, n_train: int = 30, n_test: int = 10) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)


# ---- every config in conf/dataset loads (or says where its files must be) -------------------------------------
def _load_digits(tmp_path: Path):
    return load_dataset(compose_dataset("digits")), (1, 8, 8), 10


def _load_imagefolder(tmp_path: Path):
    root = write_tree(tmp_path / "tree")
    data = load_dataset(compose_dataset("imagefolder", f"dataset.root={root}", f"dataset.cache_dir={tmp_path}/c"))
    return data, (3, 6, 6), 3


def _load_cifar10_jpeg(tmp_path: Path):
    data = load_dataset(compose_dataset("cifar10_jpeg", f"dataset.root={CIFAR_JPEG}", "dataset.max_per_class=12",
                                        "dataset.max_test_per_class=5", "dataset.val_size=20",
                                        f"dataset.cache_dir={tmp_path}/c"))
    assert (len(data.train), len(data.val), len(data.test)) == (100, 20, 50)
    assert data.classes == CIFAR10_CLASSES
    return data, (3, 32, 32), 10


def _load_mnist_like(folder: str):
    def load(tmp_path: Path):
        write_mnist(tmp_path, folder)
        name = "mnist" if folder == "MNIST" else "fashion_mnist"
        data = load_dataset(compose_dataset(name, f"dataset.root={tmp_path}", "dataset.download=false",
                                            "dataset.val_size=5"))
        assert (len(data.train), len(data.val), len(data.test)) == (25, 5, 10)
        return data, (1, 28, 28), 10
    return load


def _missing_cifar(name: str, folder: str):
    def load(tmp_path: Path):
        with pytest.raises(DataError) as err:
            load_dataset(compose_dataset(name, f"dataset.root={tmp_path}", "dataset.download=false"))
        text = str(err.value)
        assert str(tmp_path.resolve() / folder) in text and "download" in text
        return None
    return load


LOADERS = {
    "digits": _load_digits,
    "imagefolder": _load_imagefolder,
    "cifar10_jpeg": _load_cifar10_jpeg,
    "mnist": _load_mnist_like("MNIST"),
    "fashion_mnist": _load_mnist_like("FashionMNIST"),
    "cifar10": _missing_cifar("cifar10", "cifar-10-batches-py"),       # CIFAR files are checksummed: no fakes
    "cifar100": _missing_cifar("cifar100", "cifar-100-python"),
}


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "conf" / "dataset").glob("*.yaml")))
def test_every_dataset_config_loads(name: str, tmp_path: Path) -> None:
    assert name in LOADERS, f"conf/dataset/{name}.yaml has no test"
    loaded = LOADERS[name](tmp_path)
    if loaded is None:
        return
    data, shape, classes = loaded
    assert data.input_shape == shape and data.num_classes == classes
    for split in (data.train, data.val, data.test):
        assert split.images.dtype == torch.uint8 and split.labels.max() < classes
    assert all(0 < m < 1 for m in data.mean) and all(0 < s < 1 for s in data.std)


# ---- digits and validation carving ---------------------------------------------------------------------------
def test_digits_split_is_fixed_and_validation_comes_from_train() -> None:
    a, b = load_digits_splits(), load_digits_splits()
    assert (len(a.train), len(a.val), len(a.test)) == (1293, 144, 360)
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.val.labels, b.val.labels)
    no_val = load_digits_splits(val_size=0)
    assert len(no_val.val) == 0 and torch.equal(no_val.test.images, a.test.images)
    train_rows = {bytes(x) for x in no_val.train.images.numpy()}
    assert all(bytes(x) in train_rows for x in a.val.images.numpy())          # carved from train ...
    other = load_digits_splits(val_seed=1)
    assert not torch.equal(other.val.images, a.val.images)                     # ... with its own seed
    assert torch.bincount(a.val.labels, minlength=10).min() >= 13              # stratified: ~14 per class


def test_carve_validation_is_disjoint_stratified_and_seeded() -> None:
    n = 300
    images = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n) % 256
    images[:, 0, 0, 1] = torch.arange(n) // 256
    split = Split(images, torch.arange(n) % 3)
    train, val = carve_validation(split, 0.2, seed=5)
    ids = lambda s: set((s.images[:, 0, 0, 0].long() + 256 * s.images[:, 0, 0, 1].long()).tolist())  # noqa: E731
    assert len(val) == 60 and ids(train).isdisjoint(ids(val)) and ids(train) | ids(val) == set(range(n))
    assert torch.bincount(val.labels).tolist() == [20, 20, 20]
    assert ids(carve_validation(split, 60, seed=5)[1]) == ids(val)
    assert ids(carve_validation(split, 60, seed=6)[1]) != ids(val)
    with pytest.raises(DataError):
        carve_validation(split, n, seed=0)
    # too few left to hold every class (a stratified split cannot; scikit-learn's raw error used to reach the user):
    # an unstratified split, still seeded and disjoint
    rest, held = carve_validation(split, n - 2, seed=0)
    assert len(rest) == 2 and len(held) == n - 2 and ids(rest).isdisjoint(ids(held))


def test_a_subset_takes_any_kind_of_index_and_stays_on_the_splits_device() -> None:
    split = Split(torch.arange(6, dtype=torch.uint8).reshape(6, 1, 1, 1), torch.arange(6) * 10)
    for index in ([4, 1], np.array([4, 1]), torch.tensor([4, 1]), torch.tensor([4, 1], dtype=torch.int32)):
        part = split.subset(index)
        assert part.labels.tolist() == [40, 10] and part.images.flatten().tolist() == [4, 1], index
    for mask in (torch.tensor([False, True, False, False, True, False]), np.array([0, 1, 0, 0, 1, 0], dtype=bool)):
        with pytest.raises(TypeError, match="not a boolean mask"):   # it would read as the indices 0 and 1
            split.subset(mask)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_validation_is_carved_from_a_split_kept_on_the_gpu() -> None:
    # the search task gives DARTS its evaluator's data, which lives on the GPU: the same split as on the host
    split = Split(torch.arange(300, dtype=torch.uint8).reshape(300, 1, 1, 1), torch.arange(300) % 3)
    host = carve_validation(split, 0.2, seed=5)
    device = carve_validation(split.to("cuda"), 0.2, seed=5)
    for a, b in zip(host, device):
        assert b.images.device.type == "cuda" and torch.equal(a.images, b.images.cpu())
        assert torch.equal(a.labels, b.labels.cpu())
    assert device[0].subset(torch.tensor([2, 0], device="cuda")).labels.device.type == "cuda"


def test_channel_stats_match_numpy() -> None:
    images = torch.randint(0, 256, (50, 3, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = channel_stats(images)
    x = images.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3)), rtol=1e-9)


# ---- image folders and the cache ------------------------------------------------------------------------------
def test_imagefolder_decodes_exact_pixels_and_sorted_classes(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "tree")
    data = imagefolder.load_imagefolder(root, cache_dir=tmp_path / "cache", val_size=0)
    assert data.classes == ("cat", "dog", "emu")
    assert data.train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert data.train.images[5, :, 1, 1].tolist() == list(COLOURS["dog"])    # PNG is lossless
    assert data.train.images[5, 0, 0, 0].item() == 1                          # dog/001.png, in file order
    assert len(data.test) == 6


def test_imagefolder_cache_is_reused_and_keyed_by_contents(tmp_path: Path, monkeypatch) -> None:
    root = write_tree(tmp_path / "tree")
    first = imagefolder.read_imagefolder(root, cache_dir=tmp_path / "cache")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")
    monkeypatch.setattr(imagefolder, "decode_many", no_decoding)
    again = imagefolder.read_imagefolder(root, cache_dir=tmp_path / "cache")
    assert torch.equal(first["train_images"], again["train_images"])
    monkeypatch.undo()

    pixels = np.zeros((6, 6, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "train" / "cat" / "000.png")            # new contents, new key
    os.utime(root / "train" / "cat" / "000.png", ns=(1, 1))
    changed = imagefolder.read_imagefolder(root, cache_dir=tmp_path / "cache")
    assert changed["train_images"][0].sum() == 0
    assert len(list((tmp_path / "cache" / "imagefolder").glob("*.pt"))) == 2


def test_imagefolder_reads_archives_like_folders(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "tree")
    archive = tmp_path / "tree.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="top")                                            # a wrapping folder is fine
    folder = imagefolder.read_imagefolder(root, cache_dir=tmp_path / "c1")
    packed = imagefolder.read_imagefolder(archive, cache_dir=tmp_path / "c2")
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(folder[key], packed[key])


def test_imagefolder_archive_keeps_only_the_images_the_limits_select(tmp_path: Path) -> None:
    # members in descending name order and a second copy of one name: the kept ones arrive after the others
    root = write_tree(tmp_path / "tree", train=6, test=3)
    archive = tmp_path / "tree.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted((p for p in root.rglob("*.png")), reverse=True):
            tar.add(path, arcname=f"top/{path.relative_to(root)}")
        tar.add(root / "train" / "dog" / "005.png", arcname="other/train/dog/001.png")   # same name, later
    listing = imagefolder._list_archive(archive, {"train": 2, "test": None})
    assert {cls: [name for name, _ in items] for cls, items in listing["train"].items()} == {
        cls: ["000.png", "001.png"] for cls in COLOURS}
    assert [len(items) for items in listing["test"].values()] == [3, 3, 3]
    assert listing["train"]["dog"][1][1] == (root / "train" / "dog" / "001.png").read_bytes()  # the first of the two
    packed = imagefolder.read_imagefolder(archive, cache_dir=tmp_path / "c1", max_per_class=2, max_test_per_class=1)
    folder = imagefolder.read_imagefolder(root, cache_dir=tmp_path / "c2", max_per_class=2, max_test_per_class=1)
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(folder[key], packed[key])
    assert packed["train_images"][:, 0, 0, 0].tolist() == [0, 1] * 3


def test_imagefolder_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        imagefolder.read_imagefolder(tmp_path / "nowhere", cache_dir=tmp_path / "c")
    only_train = tmp_path / "only_train"
    (only_train / "train" / "a").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(only_train / "train" / "a" / "x.png")
    with pytest.raises(DataError, match="no 'test' images") as err:
        imagefolder.read_imagefolder(only_train, cache_dir=tmp_path / "c")
    assert "root/test/<class>/<image>" in str(err.value)
    mixed = write_tree(tmp_path / "mixed")
    Image.new("RGB", (9, 7)).save(mixed / "train" / "cat" / "big.png")
    with pytest.raises(DataError, match="different sizes") as err:
        imagefolder.read_imagefolder(mixed, cache_dir=tmp_path / "c")
    assert "image_size" in str(err.value)
    resized = imagefolder.read_imagefolder(mixed, cache_dir=tmp_path / "c", image_size=(4, 5), mode="L")
    assert tuple(resized["train_images"].shape[1:]) == (1, 4, 5)


def test_shared_cifar10_jpeg_subset(tmp_path: Path) -> None:
    data = imagefolder.load_imagefolder(CIFAR_JPEG, "cifar10_jpeg", cache_dir=tmp_path, max_per_class=3,
                                        max_test_per_class=2, val_size=0)
    assert data.classes == CIFAR10_CLASSES and data.input_shape == (3, 32, 32)
    assert data.train.labels.tolist() == [c for c in range(10) for _ in range(3)]
    assert data.train.images.float().std() > 20                                 # real pictures, not blanks


@pytest.mark.slow
def test_full_cifar10_jpeg_decodes_once_then_loads_from_the_cache(tmp_path: Path, monkeypatch) -> None:
    """The 60,000 images are decoded once into a fresh cache; the next load reads only that cache. How fast the
    decode and the cached load are: bench/imagefolder_cache.py."""
    first = imagefolder.read_imagefolder(CIFAR_JPEG, cache_dir=tmp_path)
    assert len(list((tmp_path / "imagefolder").glob("*.pt"))) == 1

    def no_reading(*args, **kwargs):
        raise AssertionError("read the archive again despite the cache")
    monkeypatch.setattr(imagefolder, "_list_archive", no_reading)
    monkeypatch.setattr(imagefolder, "decode_many", no_reading)
    data = imagefolder.load_imagefolder(CIFAR_JPEG, "cifar10_jpeg", cache_dir=tmp_path, val_size=5000)
    assert (len(data.train), len(data.val), len(data.test)) == (45000, 5000, 10000)
    assert torch.bincount(data.test.labels).tolist() == [1000] * 10
    assert torch.equal(data.test.images, first["test_images"])


# ---- batches and augmentation ----------------------------------------------------------------------------------
def batch(n: int = 6, c: int = 2, h: int = 5, w: int = 7) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(1))


def test_random_translate_is_a_shifted_window_of_the_padded_image() -> None:
    x = batch()
    for mode in ("constant", "reflect"):
        out = random_translate(x, 2, mode, torch.Generator().manual_seed(0))
        padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode=mode)
        for i in range(len(x)):
            windows = [(dy, dx) for dy in range(5) for dx in range(5)
                       if torch.equal(out[i], padded[i, :, dy:dy + 5, dx:dx + 7])]
            assert windows, f"image {i} is not a shifted crop ({mode})"
    shifts = {tuple(random_translate(x, 2, "constant", torch.Generator().manual_seed(s))[0, 0, 2, :3].tolist())
              for s in range(20)}
    assert len(shifts) > 3                                                      # the shift really varies


def test_flips_random_and_alternating() -> None:
    x = batch(n=64)
    index = torch.arange(64)
    per_image = Augmenter(AugmentConfig(flip="random"), 64, torch.Generator().manual_seed(0))
    out = per_image(x, index, 0)
    flipped = torch.tensor([torch.equal(out[i], x[i].flip(-1)) for i in range(64)])
    kept = torch.tensor([torch.equal(out[i], x[i]) for i in range(64)])
    assert bool((flipped | kept).all()) and 10 < int(flipped.sum()) < 54
    alternate = Augmenter(AugmentConfig(flip="alternate"), 64, torch.Generator().manual_seed(0))
    even, odd, even2 = (alternate(x, index, e) for e in (0, 1, 2))
    for i in range(64):
        assert torch.equal(even[i], even2[i]) and torch.equal(odd[i], even[i].flip(-1))


def test_cutout_zeroes_one_square_per_image() -> None:
    out = cutout(torch.ones(8, 3, 6, 6), 3, torch.Generator().manual_seed(0))
    zeros = (out == 0).sum(dim=(2, 3))
    assert bool((zeros == 9).all())


def test_device_loader_normalises_shuffles_and_drops_last() -> None:
    data = load_digits_splits()
    loader = DeviceLoader(data.train, 100, "cpu", data.mean, data.std, shuffle=True, drop_last=True, seed=3)
    assert len(loader) == len(data.train) // 100
    batches = list(loader)
    assert all(x.shape == (100, 1, 8, 8) and x.dtype == torch.float32 for x, _ in batches)
    everything = torch.cat([x for x, _ in DeviceLoader(data.train, 500, "cpu", data.mean, data.std)])
    assert abs(everything.mean().item()) < 1e-4 and abs(everything.std().item() - 1) < 1e-3
    order_a = torch.cat([y for _, y in batches])
    order_b = torch.cat([y for _, y in DeviceLoader(data.train, 100, "cpu", data.mean, data.std, shuffle=True,
                                                    drop_last=True, seed=3)])
    assert torch.equal(order_a, order_b) and not torch.equal(order_a, data.train.labels[:len(order_a)])
    second_epoch = torch.cat([y for _, y in loader])
    assert not torch.equal(second_epoch, order_a)                               # a new order each epoch


def _corrupt(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def test_a_damaged_archive_is_an_error_never_a_smaller_data_set(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "tree")
    plain = tmp_path / "tree.tar"
    with tarfile.open(plain, "w") as tar:
        tar.add(root, arcname="top")
    data = plain.read_bytes()
    with tarfile.open(plain) as tar:   # a member header in the middle of the archive
        header = tar.getmembers()[len(tar.getmembers()) // 2].offset
    bad_header = tmp_path / "bad_header.tar"
    bad_header.write_bytes(_corrupt(data, header + 148))   # its checksum field: tarfile stopped there, silently
    with pytest.raises(DataError, match="the archive is damaged: its listing ends at offset"):
        imagefolder.read_imagefolder(bad_header, cache_dir=tmp_path / "c")
    for suffix, mode in ((".tar.xz", "w:xz"), (".tar.gz", "w:gz")):
        packed = tmp_path / f"tree{suffix}"
        with tarfile.open(packed, mode) as tar:
            tar.add(root, arcname="top")
        broken = tmp_path / f"broken{suffix}"
        broken.write_bytes(_corrupt(packed.read_bytes(), len(packed.read_bytes()) // 2))
        with pytest.raises(DataError, match=r"cannot read the archive \(damaged\?\)|the archive is damaged") as info:
            imagefolder.read_imagefolder(broken, cache_dir=tmp_path / "c")
        assert str(info.value).startswith(str(broken))
    assert not list((tmp_path / "c").glob("imagefolder/*.pt"))   # nothing cached


def test_an_image_that_cannot_be_used_is_named(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "tree")
    (root / "train" / "dog" / "009.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"cannot use the image 'train/dog/009.png': not an image Pillow can decode"):
        imagefolder.read_imagefolder(root, cache_dir=tmp_path / "c")
    (root / "train" / "dog" / "009.png").unlink()
    Image.new("RGB", (4097, 2)).save(root / "train" / "dog" / "wide.png")
    with pytest.raises(DataError, match=r"'train/dog/wide.png': 4097x2 pixels, more than 4,096 a side") as info:
        imagefolder.read_imagefolder(root, cache_dir=tmp_path / "c")
    assert "dataset.image_size" in str(info.value)
    resized = imagefolder.read_imagefolder(root, cache_dir=tmp_path / "c", image_size=(6, 6))
    assert resized["train_images"].shape[1:] == (3, 6, 6)


def test_a_damaged_cache_file_is_rebuilt_and_a_failed_write_leaves_no_file(tmp_path: Path, monkeypatch,
                                                                           caplog) -> None:
    root = write_tree(tmp_path / "tree")
    first = imagefolder.read_imagefolder(root, cache_dir=tmp_path / "c")
    (cached,) = (tmp_path / "c" / "imagefolder").glob("*.pt")
    cached.write_bytes(cached.read_bytes()[:100])   # cut short on disk
    with caplog.at_level("WARNING"):
        again = imagefolder.read_imagefolder(root, cache_dir=tmp_path / "c")
    assert torch.equal(first["train_images"], again["train_images"]) and "it is rebuilt" in caplog.text
    assert imagefolder.load_tensors(cached) is not None   # written anew
    from search.data import cache

    def disk_full(obj, handle):  # noqa: ANN001, ANN202
        handle.write(b"partial")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(cache.torch, "save", disk_full)
    with pytest.raises(OSError):
        cache.save_tensors({"x": torch.zeros(2)}, tmp_path / "d" / "x.pt")
    assert list((tmp_path / "d").iterdir()) == []


def test_an_archive_member_larger_than_an_image_file_may_be_is_refused_before_it_is_read(tmp_path: Path,
                                                                                        monkeypatch) -> None:
    root = write_tree(tmp_path / "tree")
    archive = tmp_path / "tree.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(root, arcname="top")
    monkeypatch.setattr(imagefolder, "MAX_FILE_BYTES", 10)   # the PNGs are larger than 10 bytes
    with pytest.raises(DataError, match=r"'top/t\w+/\w+/\d+.png' holds \d+ bytes, more than an image file may \(10\)"):
        imagefolder.read_imagefolder(archive, cache_dir=tmp_path / "c")
