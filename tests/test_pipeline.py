"""The input pipeline: seeded batches, exact resume, seeded flips, and the DataLoader
pipeline drawing the very batches the in-memory one draws."""

import pytest
import torch

from difftk.data.batches import BatchStream, LoaderStream, batch_stream
from difftk.data.dataset import DataBundle
from difftk.recipe import load_recipe
from difftk.run.runtime import make_runtime
from difftk.train.trainer import Trainer

DATA = torch.arange(50 * 2 * 3, dtype=torch.float32).reshape(50, 1, 2, 3)
LABELS = torch.arange(50)


def draws(stream, k):
    return [stream.next() for _ in range(k)]


def test_same_seed_same_batches_and_each_epoch_is_a_permutation():
    a, b = BatchStream(DATA, LABELS, 8, seed=3), BatchStream(DATA, LABELS, 8, seed=3)
    first, second = draws(a, 12), draws(b, 12)
    for (x, lx), (y, ly) in zip(first, second, strict=True):
        assert torch.equal(x, y) and torch.equal(lx, ly)
    assert not torch.equal(first[0][1], BatchStream(DATA, LABELS, 8, seed=4).next()[1])
    per_epoch = 50 // 8  # the last partial batch of an epoch is dropped
    for epoch in range(2):
        seen = torch.cat([lab for _, lab in first[epoch * per_epoch:(epoch + 1) * per_epoch]])
        assert len(set(seen.tolist())) == per_epoch * 8
    for x, lab in first:
        assert torch.equal(x, DATA[lab])  # images travel with their labels
    assert not torch.equal(first[0][1], first[per_epoch][1])  # a fresh permutation


def test_resume_continues_the_batch_stream_with_flips():
    whole = BatchStream(DATA, LABELS, 8, seed=0, hflip=True)
    expected = draws(whole, 10)
    part = BatchStream(DATA, LABELS, 8, seed=0, hflip=True)
    draws(part, 4)
    resumed = BatchStream(DATA, LABELS, 8, seed=0, hflip=True)
    resumed.load_state({k: v.clone() for k, v in part.state().items()})
    for (x, lab), (y, lab2) in zip(expected[4:], draws(resumed, 6), strict=True):
        assert torch.equal(x, y) and torch.equal(lab, lab2)


def test_flips_are_seeded_mirror_images_of_about_half_the_batch():
    stream = BatchStream(DATA, LABELS, 40, seed=1, hflip=True)
    flipped = 0
    for x, lab in draws(stream, 10):
        original = DATA[lab]
        same = (x == original).flatten(1).all(1)
        mirrored = (x == original.flip(-1)).flatten(1).all(1)
        assert bool((same | mirrored).all())
        flipped += int(mirrored.sum())
    assert 150 <= flipped <= 250  # 400 fair coins: mean 200, std 10
    plain = BatchStream(DATA, LABELS, 40, seed=1).next()
    again = BatchStream(DATA, LABELS, 40, seed=1, hflip=True).next()
    assert torch.equal(plain[1], again[1])  # flips do not change which items are drawn


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_pipeline_draws_the_same_batches_and_resumes(workers):
    memory = draws(BatchStream(DATA, LABELS, 8, seed=5, hflip=True), 9)
    loader = LoaderStream(DATA, LABELS, 8, seed=5, device=torch.device("cpu"), hflip=True,
                          workers=workers)
    got = draws(loader, 5)
    loader.load_state({"drawn": torch.tensor(7)})
    got += [None, None] + draws(loader, 2)
    loader.close()
    for i, pair in enumerate(got):
        if pair is not None:
            assert torch.equal(pair[0], memory[i][0]) and torch.equal(pair[1], memory[i][1]), i


def test_pipeline_choice():
    bundle = DataBundle(train=DATA, heldout=DATA[:2], train_labels=LABELS)
    assert type(batch_stream(bundle, 8, 0, torch.device("cpu"))) is BatchStream
    bundle.pipeline = "loader"
    bundle.workers = 0
    assert type(batch_stream(bundle, 8, 0, torch.device("cpu"))) is LoaderStream


def test_trainer_resume_with_flips_through_the_loader_is_bit_identical(root, tmp_path):
    common = [f'run.out_dir="{tmp_path}"', "data.hflip=true", "data.limit=64",
              'data.pipeline="loader"', "data.workers=0", "model.channels=8",
              "model.channel_mult=[1]", "model.attention_resolutions=[]",
              "model.mid_attention=false", "train.batch_size=16", "log.every=1",
              "log.val_every=0", "log.sample_every=0", "log.checkpoint_every=0",
              "log.num_samples=2", "sampler.steps=2", "log.tensorboard=false",
              'lr_schedule.name="constant"', 'precision.name="fp32"']

    def run(name, steps, resume=False):
        r = load_recipe(root / "recipes/edm.toml", [*common, f'run.name="{name}"',
                                                    f"train.steps={steps}"], warn=False)
        trainer = Trainer(r, make_runtime("cpu"), resume=resume, progress=False)
        trainer.fit()
        return trainer.model.state_dict()

    whole = run("whole", 6)
    run("split", 3)
    resumed = run("split", 6, resume=True)
    for key, value in whole.items():
        assert torch.equal(value, resumed[key]), key
