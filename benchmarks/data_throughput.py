"""Items/s of each data source and storage format, at 32x32 and 64x64 (docs/data.md).

    python benchmarks/data_throughput.py [--items 40000] [--batch 256] [--dir /tmp/x]
        [--json benchmarks/results/data_throughput.json]

Writes synthetic uint8 RGB sets (smooth random images, so PNGs compress as photos do) and
reads random batches of ``--batch`` indices, as the batch plan asks:

- packed shards, difftk's reader (``preadv`` into the batch), from the page cache and from
  a cold file (the shards' pages dropped with posix_fadvise DONTNEED before the pass);
- the same shards through ``LoaderStream`` with 2 DataLoader workers (what training sees:
  worker gather, transfer to the main process, scaling to float);
- candidate formats on the same items: numpy memmap fancy indexing, safetensors
  (``safe_open`` slices, one per item), a folder of PNGs and an EDM zip (decoded by
  difftk's image reader), a Hugging Face Arrow set (``datasets``, when installed).

Each figure is the median of ``--repeats`` passes over ``--batches`` batches. State the CPU
(printed) with any figure quoted. Takes about 3 minutes for the defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from difftk.bench.machine import cpu_model
from difftk.data.batches import LoaderStream
from difftk.data.image_files import ImageFileItems, list_images
from difftk.data.items import ArrayItems, PixelScaling
from difftk.data.pack import finish, pack_split
from difftk.data.packed import Manifest, PackedItems, read_manifest


def synthetic(n: int, side: int, seed: int = 0) -> np.ndarray:
    """Smooth random images: a coarse random grid upsampled, plus a little noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, 3, side // 8, side // 8), dtype=np.uint8)
    images = coarse.repeat(8, axis=2).repeat(8, axis=3)
    noise = rng.integers(0, 8, images.shape, dtype=np.uint8)
    return images + noise


def drop_cache(paths) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def timed(read, n: int, batch: int, batches: int, repeats: int, before=None) -> float:
    """Median items/s of ``repeats`` passes of ``batches`` random batches through read(idx)."""
    rates = []
    for r in range(repeats):
        rng = np.random.default_rng(r)
        plan = [rng.choice(n, batch, replace=False) for _ in range(batches)]
        if before is not None:
            before()
        start = time.perf_counter()
        for idx in plan:
            read(idx)
        rates.append(batch * batches / (time.perf_counter() - start))
    return statistics.median(rates)


def loader_rate(items, batch: int, batches: int, repeats: int, workers: int) -> float:
    rates = []
    for r in range(repeats):
        stream = LoaderStream(items, None, batch, seed=r, device=torch.device("cpu"),
                              workers=workers)
        stream.next()  # workers started
        start = time.perf_counter()
        for _ in range(batches):
            x, _ = stream.next()
        rates.append(batch * batches / (time.perf_counter() - start))
        stream.close()
    return statistics.median(rates)


def write_candidates(root: Path, images: np.ndarray, png_items: int) -> dict:
    from PIL import Image
    from safetensors.numpy import save_file

    paths = {}
    packed = root / "packed"
    record = pack_split(ArrayItems(images, "synthetic"), None, packed, "train", 8192, workers=2)
    finish(packed, Manifest(item_shape=list(images.shape[1:]), dtype="uint8", white=255,
                            splits={"train": record}))
    paths["packed"] = packed
    np.save(root / "memmap.npy", images)
    paths["memmap"] = root / "memmap.npy"
    save_file({"images": images}, str(root / "images.safetensors"))
    paths["safetensors"] = root / "images.safetensors"
    folder = root / "pngs"
    folder.mkdir()
    with zipfile.ZipFile(root / "edm.zip", "w", compression=zipfile.ZIP_STORED) as z:
        for i in range(png_items):
            name = f"{i // 1000:05d}/img{i:08d}.png"
            (folder / name).parent.mkdir(exist_ok=True)
            Image.fromarray(images[i].transpose(1, 2, 0)).save(folder / name)
            z.write(folder / name, name)
    paths["pngs"], paths["zip"] = folder, root / "edm.zip"
    try:
        import datasets

        ds = datasets.Dataset.from_dict({"image": [images[i].transpose(1, 2, 0)
                                                   for i in range(png_items)]})
        ds.save_to_disk(str(root / "hf"))
        paths["hf"] = root / "hf"
    except ImportError:
        pass
    return paths


def measure(side: int, n: int, args, root: Path) -> dict:
    images = synthetic(n, side)
    png_items = min(n, args.png_items)
    paths = write_candidates(root, images, png_items)
    b, k, rep = args.batch, args.batches, args.repeats
    out: dict = {"side": side, "items": n, "batch": b, "bytes_per_item": int(images[0].nbytes)}
    packed = PackedItems(paths["packed"], read_manifest(paths["packed"]), "train")
    shard_files = [paths["packed"] / s.file for s in packed.record.shards]
    packed.read(np.arange(n))  # page cache warm
    out["packed_page_cache"] = timed(packed.read, n, b, k, rep)
    del packed  # its maps keep the pages resident: a cold read needs them gone
    cold = {}

    def fresh():
        cold.pop("items", None)
        drop_cache(shard_files)
        cold["items"] = PackedItems(paths["packed"], read_manifest(paths["packed"]), "train")

    out["packed_cold"] = timed(lambda idx: cold["items"].read(idx), n, b, max(1, k // 4), rep,
                               before=fresh)
    cold.clear()
    packed = PackedItems(paths["packed"], read_manifest(paths["packed"]), "train")
    lazy = packed.subset(np.arange(n))
    lazy.scaling = PixelScaling(255.0, (0.5,), (0.5,))
    out["packed_loader_2_workers"] = loader_rate(lazy, b, k, rep, workers=2)
    out["packed_loader_0_workers"] = loader_rate(lazy, b, k, rep, workers=0)
    mm = np.load(paths["memmap"], mmap_mode="r")
    out["numpy_memmap"] = timed(lambda idx: np.ascontiguousarray(mm[np.sort(idx)]), n, b, k, rep)
    from safetensors import safe_open

    with safe_open(str(paths["safetensors"]), "np") as f:
        sl = f.get_slice("images")
        out["safetensors_slices"] = timed(
            lambda idx: np.stack([sl[int(i):int(i) + 1] for i in idx]), n, b, max(1, k // 4), rep)
    for name in ("pngs", "zip"):
        listing = list_images(paths[name])
        files = ImageFileItems(paths[name], listing.names, None, True, 3)
        out[f"{name}_decoded"] = timed(files.read, png_items, b, max(1, k // 8), rep)
    if "hf" in paths:
        import datasets

        table = datasets.load_from_disk(str(paths["hf"])).with_format("numpy")
        out["hf_arrow"] = timed(lambda idx: table[np.sort(idx).tolist()]["image"], png_items, b,
                                max(1, k // 8), rep)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=40000)
    p.add_argument("--png-items", type=int, default=4000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(2)
    report = {"cpu": cpu_model(), "cores": os.cpu_count(), "rows": []}
    print(f"CPU: {report['cpu']} ({report['cores']} cores)")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for side in (32, 64):
            root = Path(tmp) / f"s{side}"
            root.mkdir()
            row = measure(side, args.items, args, root)
            report["rows"].append(row)
            print(f"\n{side}x{side} RGB uint8, {row['items']} items, batches of {row['batch']}")
            for key, value in row.items():
                if isinstance(value, float):
                    print(f"  {key:28s} {value:12,.0f} items/s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
