"""Data larger than memory: packed shards, lazy image files, and the lazy training path.

A pack holds exactly the items its source decodes; training on it through the lazy
pipeline is bit-identical to training on the same items in memory, resumes exactly, and
matches one process on two; reading a set several times a memory bound leaves the process's
anonymous memory flat; a damaged shard, a broken image or a vanished file is one sentence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT
from PIL import Image
from safetensors.torch import load_file

from difftk.data.image_files import ImageFileItems, list_images
from difftk.data.items import ArrayItems, Items, PixelScaling
from difftk.data.pack import finish, pack_split
from difftk.data.packed import Manifest, PackedItems, read_manifest
from difftk.errors import DataError, DataUnavailable
from difftk.recipe import load_recipe
from difftk.run.runtime import make_runtime
from difftk.train.trainer import Trainer

MLP = ROOT / "recipes/architectures/mlp.toml"
SMALL = ["model.width=32", "model.depth=1", "train.batch_size=32", "log.every=1",
         "log.num_samples=4", "sampler.steps=2", "log.val_every=3", "log.checkpoint_every=3",
         "log.sample_every=0", 'lr_schedule.name="constant"', "target.sigma_data=0.5",
         "weight.sigma_data=0.5"]


def difftk(*args, cwd=None, check=True):
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    res = subprocess.run([sys.executable, "-m", "difftk", *map(str, args)], capture_output=True,
                         text=True, cwd=cwd, timeout=300, env={**os.environ, "PYTHONPATH": path})
    if check:
        assert res.returncode == 0, res.stderr
    return res


def image_folder(root: Path, sizes=((20, 24),) * 6) -> Path:
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        cls = root / ("cat" if i % 2 else "dog")
        cls.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(cls / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def digits_pack(tmp_path_factory):
    """scikit-learn's digits packed through their recipe (the `recipe` source)."""
    out = tmp_path_factory.mktemp("pack") / "digits"
    res = difftk("data", "pack", MLP, "-o", out, "--shard-items", "500")
    assert "train  1797 items [1, 8, 8] float64 in 4 shard(s)" in res.stdout
    return out


def _train(tmp, name, data, *extra, resume=False):
    r = load_recipe(MLP, [f'run.out_dir="{tmp}"', f'run.name="{name}"', *SMALL, *data, *extra],
                    warn=False)
    trainer = Trainer(r, make_runtime("cpu"), resume=resume, progress=False)
    trainer.fit()
    return trainer


def _weights(run_dir, step):
    ck = run_dir / "checkpoints" / f"{step:08d}"
    return {g: load_file(str(ck / f"{g}.safetensors")) for g in ("model", "ema", "optimizer")}


def _assert_equal(a, b):
    for group in a:
        for key in a[group]:
            assert torch.equal(a[group][key], b[group][key]), f"{group}/{key}"


def packed_data(path, *more):
    """--set lines: the digits pack, with the digits recipe's own held-out split."""
    return ['data.name="packed"', f'data.path="{path}"', "data.heldout=297", *more]


def test_a_pack_holds_what_its_source_decodes_with_its_statistics(digits_pack):
    from difftk.plugins.datasets.digits import Digits
    from difftk.plugins.datasets.packed import Packed

    memory = Digits().load()
    for pipeline in ("memory", "loader"):
        packed = Packed(path=str(digits_pack), heldout=297, pipeline=pipeline).load()
        assert torch.equal(packed.train[:], memory.train) and torch.equal(
            packed.heldout[:], memory.heldout)
        assert torch.equal(packed.train_labels, memory.train_labels)
        s, ref = packed.stats, memory.stats  # from the manifest's moments, minus the held-out
        assert s.std == pytest.approx(ref.std, rel=1e-9)
        assert s.channel_mean == pytest.approx(ref.channel_mean, rel=1e-9)
    lazy = Packed(path=str(digits_pack), heldout=297, pipeline="loader").load()
    assert type(lazy.train).__name__ == "IndexedItems" and lazy.train.shape == (1500, 1, 8, 8)
    manifest = json.loads((digits_pack / "manifest.json").read_text())
    assert manifest["num_classes"] == 10 and manifest["white"] == 16.0
    assert difftk("data", "verify", digits_pack).returncode == 0


def test_lazy_training_is_bit_identical_to_memory_and_resumes_exactly(digits_pack, tmp_path):
    _train(tmp_path, "memory", [], "train.steps=6")
    _train(tmp_path, "lazy", packed_data(digits_pack, 'data.pipeline="loader"', "data.workers=2"),
           "train.steps=6")
    _train(tmp_path, "resumed", packed_data(digits_pack, 'data.pipeline="loader"', "data.workers=0"),
           "train.steps=3")
    _train(tmp_path, "resumed", packed_data(digits_pack, 'data.pipeline="loader"', "data.workers=0"),
           "train.steps=6", resume=True)
    whole = _weights(tmp_path / "memory", 6)
    _assert_equal(whole, _weights(tmp_path / "lazy", 6))
    _assert_equal(whole, _weights(tmp_path / "resumed", 6))


def test_two_processes_on_packed_data_match_one_process(digits_pack, tmp_path):
    sets = [f'run.out_dir="{tmp_path}"', 'run.name="two"', *SMALL, "train.steps=3",
            *packed_data(digits_pack, 'data.pipeline="loader"', "data.workers=1")]
    args = [a for s in sets for a in ("--set", s)]
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc-per-node=2", "-m", "difftk", "train", str(MLP), "--no-progress",
                          *args], capture_output=True, text=True, cwd=tmp_path, timeout=240,
                         env={**os.environ, "PYTHONPATH": path})
    assert res.returncode == 0, res.stderr
    _train(tmp_path, "one", packed_data(digits_pack, 'data.pipeline="loader"', "data.workers=0"),
           "train.steps=3")
    one, two = _weights(tmp_path / "one", 3), _weights(tmp_path / "two", 3)
    for group in one:
        for key in one[group]:
            torch.testing.assert_close(two[group][key], one[group][key], rtol=1e-4, atol=1e-6)


def _rss_anon_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc/self/status")


class RandomImages(Items):
    """uint8 images made at read time from their index: a source that never exists whole."""

    def __init__(self, n: int, side: int):
        self.n, self.side = n, side

    def __len__(self):
        return self.n

    @property
    def item_shape(self):
        return (3, self.side, self.side)

    @property
    def stored_dtype(self):
        return torch.uint8

    def read(self, indices):
        return torch.stack([torch.randint(0, 256, self.item_shape, dtype=torch.uint8,
                                          generator=torch.Generator().manual_seed(int(i)))
                            for i in indices])


READ_TWICE = """
import sys
from pathlib import Path
import torch
from difftk.data.batches import LoaderStream
from difftk.data.items import PixelScaling
from difftk.data.packed import PackedItems, read_manifest

def rss_anon_kb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])

root = Path(sys.argv[1])
lazy = PackedItems(root, read_manifest(root), "train", PixelScaling(255.0, (0.5,), (0.5,)))
stream = LoaderStream(lazy, None, 256, seed=0, device=torch.device("cpu"), workers=0)
for _ in range(10):
    stream.next()  # the allocator holds its batch buffers before the baseline
before = rss_anon_kb()
total, steps = 0.0, 2 * len(lazy) // 256
for _ in range(steps):  # every item about twice
    x, _ = stream.next()
    total += float(x.mean())
print((rss_anon_kb() - before) / 1024, total / steps)
"""


def test_reading_a_set_four_times_a_memory_bound_keeps_anonymous_memory_flat(tmp_path):
    bound_mb, items, side = 16, 6300, 64  # 6,300 x 12 KB = 77 MB of pixels
    record = pack_split(RandomImages(items, side), None, tmp_path, "train", 900, workers=1)
    finish(tmp_path, Manifest(item_shape=[3, side, side], dtype="uint8", white=255,
                              splits={"train": record}))
    stored = items * 3 * side * side
    assert stored > 4 * bound_mb * 2**20
    # A fresh process, with glibc's mmap threshold fixed: freed batch buffers are then
    # returned at once instead of kept in the heap, so RssAnon measures what is held.
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "MALLOC_MMAP_THRESHOLD_": "131072"}
    res = subprocess.run([sys.executable, "-c", READ_TWICE, str(tmp_path)], capture_output=True,
                         text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    grew_mb, mean = map(float, res.stdout.split())
    assert grew_mb < bound_mb, f"anonymous memory grew by {grew_mb:.1f} MB reading {stored / 2**20:.0f} MB"
    assert abs(mean) < 0.01  # uniform bytes scale to mean 0: the data was read


def test_an_edm_zip_and_its_folder_pack_alike_with_dataset_json_labels(tmp_path):
    folder = image_folder(tmp_path / "imgs", sizes=((8, 8),) * 6)
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.png"))
    labels = {n: i % 3 for i, n in enumerate(names)}
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as z:
        for n in names:
            z.write(folder / n, n)
        z.writestr("dataset.json", json.dumps({"labels": [[n, c] for n, c in labels.items()]}))
    difftk("data", "pack", tmp_path / "set.zip", "-o", tmp_path / "z")
    difftk("data", "pack", folder, "-o", tmp_path / "f")
    z, f = (PackedItems(tmp_path / d, read_manifest(tmp_path / d), "train") for d in "zf")
    assert torch.equal(z.read(np.arange(6)), f.read(np.arange(6)))
    assert z.labels().tolist() == [labels[n] for n in names]  # dataset.json, not folders
    assert f.labels().tolist() == [0 if n.startswith("cat") else 1 for n in names]
    listing = list_images(folder)
    direct = ImageFileItems(folder, listing.names, None, True, 3).read(np.arange(6))
    assert torch.equal(direct, f.read(np.arange(6)))


def test_pack_resumes_the_shards_it_had_not_finished(tmp_path):
    data = np.random.default_rng(1).integers(0, 256, (50, 1, 4, 4), dtype=np.uint8)

    class Failing(ArrayItems):
        reads = 0

        def read(self, indices):
            Failing.reads += 1
            if indices[0] >= 30 and Failing.fail:
                raise RuntimeError("killed")
            return super().read(indices)

    Failing.fail = True
    with pytest.raises(RuntimeError):
        pack_split(Failing(data), None, tmp_path, "train", 10, workers=1)
    assert len(list(tmp_path.glob("train-*.npy"))) == 3  # shards 0..2 were finished
    Failing.fail, Failing.reads = False, 0
    record = pack_split(Failing(data), None, tmp_path, "train", 10, workers=1)
    assert Failing.reads == 2  # only shards 3 and 4 were read again
    finish(tmp_path, Manifest(item_shape=[1, 4, 4], dtype="uint8", white=255,
                              splits={"train": record}))
    got = PackedItems(tmp_path, read_manifest(tmp_path), "train").read(np.arange(50))
    assert np.array_equal(got.numpy(), data)


def test_broken_images_stop_or_are_skipped_and_counted(tmp_path):
    folder = image_folder(tmp_path / "imgs", sizes=((8, 8),) * 4)
    (folder / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    res = difftk("data", "pack", folder, "-o", tmp_path / "a", check=False)
    assert res.returncode != 0 and "broken.png" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = difftk("data", "pack", folder, "-o", tmp_path / "b", "--on-error", "skip")
    assert "4 items" in res.stdout and "1 skipped" in res.stdout
    manifest = read_manifest(tmp_path / "b")
    assert "broken.png" in manifest.splits["train"].skipped[0]


def test_mixed_sizes_without_a_resolution_name_the_odd_image(tmp_path):
    folder = image_folder(tmp_path / "imgs", sizes=((8, 8), (8, 8), (9, 8)))
    res = difftk("data", "pack", folder, "-o", tmp_path / "p", check=False)
    assert res.returncode != 0 and "2.png" in res.stderr and "--resolution" in res.stderr
    assert "Traceback" not in res.stderr
    difftk("data", "pack", folder, "-o", tmp_path / "p", "--resolution", "8")


def test_a_damaged_pack_is_named_before_training(digits_pack, tmp_path):
    import shutil

    from difftk.plugins.datasets.packed import Packed

    bad = tmp_path / "bad"
    shutil.copytree(digits_pack, bad)
    shard = bad / "train-00001.npy"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(DataError, match="train-00001.npy: is truncated"):
        Packed(path=str(bad)).load()
    res = difftk("data", "verify", bad, check=False)
    assert res.returncode != 0 and "train-00001.npy" in res.stderr
    manifest = json.loads((digits_pack / "manifest.json").read_text())
    manifest["splits"]["train"]["count"] += 1
    (bad / "manifest.json").write_text(json.dumps(manifest))
    shutil.copy(digits_pack / "train-00001.npy", shard)
    with pytest.raises(DataError, match="counts 1798 items but its shards hold 1797"):
        Packed(path=str(bad)).load()
    (bad / "manifest.json").write_text("{}")
    with pytest.raises(DataError, match="not a difftk packed-data manifest"):
        Packed(path=str(bad)).load()


def test_a_shard_that_goes_away_mid_run_stops_with_a_checkpoint(digits_pack, tmp_path):
    import shutil

    pack = tmp_path / "pack"
    shutil.copytree(digits_pack, pack)
    r = load_recipe(MLP, [f'run.out_dir="{tmp_path}"', 'run.name="gone"', *SMALL,
                          "train.steps=50", *packed_data(pack, 'data.pipeline="loader"',
                                                    "data.workers=0")], warn=False)
    trainer = Trainer(r, make_runtime("cpu"), progress=False)
    real_step = trainer.train_step

    def step_then_truncate(x0, labels):
        result = real_step(x0, labels)
        if trainer.step == 4:
            for s in pack.glob("train-0000*.npy"):
                os.truncate(s, 200)  # the shards shrink under the open run
        return result

    trainer.train_step = step_then_truncate
    with pytest.raises(DataUnavailable) as exc:
        trainer.fit()
    message = str(exc.value)
    assert "shorter than when" in message and "saved checkpoint" in message and "--resume" in message
    assert (tmp_path / "gone" / "checkpoints" / "00000004").is_dir()


def test_statistics_of_a_large_lazy_set_come_from_a_stated_subset_with_its_error():
    from difftk.data.stats import data_statistics, subset_statistics

    items = RandomImages(3000, 8)
    items.scaling = PixelScaling(255.0, (0.5,), (0.5,))
    full = data_statistics(items)
    part = subset_statistics(items, 600, seed=1)
    assert part.subset == 600 and 0 < part.std_error < 0.01
    assert abs(part.std - full.std) < 4 * part.std_error  # uniform bytes: std 0.577 in [-1, 1]
    assert full.std == pytest.approx(2 / 255 * np.sqrt((256**2 - 1) / 12), rel=0.01)


def test_sample_metrics_read_a_lazy_held_out_split(digits_pack):
    from difftk.eval.metrics import sample_metrics
    from difftk.plugins.datasets.packed import Packed

    lazy = Packed(path=str(digits_pack), heldout=297, pipeline="loader").load()
    memory = Packed(path=str(digits_pack), heldout=297).load()
    samples = memory.heldout[:100] * 0.9
    assert sample_metrics(samples, lazy.heldout, "image") == sample_metrics(
        samples, memory.heldout, "image")
