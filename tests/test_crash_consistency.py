"""SIGKILL a tiny run at many points, inside checkpoint writes too; every resumed run must
end with a model, EMA and optimizer bit-identical to an uninterrupted run.

The kills land just before the K-th file-system step of the checkpoint writer (each
file write, fsync, rename, link, removal; tests/crash_harness.py), some of them halfway
through a file, and right after chosen training steps. benchmarks/crash_campaign.py
tries every step of every checkpoint.
"""

import pytest
from conftest import ROOT
from crash_harness import Zygote, final_tensors, identical

SETS = ["train.steps=12", "log.checkpoint_every=3", "log.keep_last=2", "log.every=3",
        "log.val_every=0", "log.sample_every=0", "log.num_samples=4", "log.tensorboard=false",
        "sampler.steps=2", "model.width=16", "model.depth=1", "train.batch_size=32"]


def train_args(out, name, *flags):
    args = ["train", str(ROOT / "recipes/toy2d.toml"), "--no-progress", *flags]
    for s in [*SETS, f'run.out_dir="{out}"', f'run.name="{name}"']:
        args += ["--set", s]
    return args


def kill_and_resume(zygote, out, name, **kill) -> tuple[bool, int]:
    """Run with a kill point, then --resume-or-start until it finishes (at most twice).
    Returns (killed, exit status of the last run)."""
    log = out / f"{name}.log"
    first = zygote.run(train_args(out, name, "--resume-or-start"), log, **kill)
    result = first
    for _ in range(2):
        if result["rc"] == 0 and not result["killed"]:
            break
        result = zygote.run(train_args(out, name, "--resume-or-start"), log)
    return first["killed"], result["rc"]


@pytest.fixture(scope="module")
def zygote():
    z = Zygote(ROOT / "src")
    yield z
    z.close()


@pytest.fixture(scope="module")
def reference(zygote, tmp_path_factory):
    out = tmp_path_factory.mktemp("crash")
    count = out / "count"
    res = zygote.run(train_args(out, "ref"), out / "ref.log", count=str(count))
    assert res["rc"] == 0, (out / "ref.log").read_text()
    return out, final_tensors(out / "ref"), int(count.read_text())


def test_kills_at_many_points_resume_bit_identical(zygote, reference):
    out, expected, total_ops = reference
    assert total_ops > 40  # 4 checkpoints of ~13 steps each, plus the run's recipe.toml
    # six steps spread over all four checkpoints, a torn file, a kill between checkpoints
    points = [dict(kill_op=k) for k in range(2, total_ops + 1, total_ops // 6)][:6]
    points += [dict(kill_op=17, torn=True), dict(kill_step=4)]
    survived, report = 0, []
    for i, kill in enumerate(points):
        name = f"k{i}"
        killed, rc = kill_and_resume(zygote, out, name, **kill)
        assert killed, kill
        ok = rc == 0 and identical(final_tensors(out / name), expected)
        survived += ok
        if not ok:
            report.append(f"{kill}: rc {rc}\n{(out / f'{name}.log').read_text()[-2000:]}")
    assert survived == len(points), "\n".join(report)
