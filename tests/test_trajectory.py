"""The denoising trajectory (seed 003 Figure 1.1): the kept steps are the sampler's own states
and x0 estimates, the grid has one row per sample and (x_t, x0 estimate) per kept step, and
`difftk plot trajectory` writes PNG, CSV and the run's TensorBoard."""

import csv

import pytest
import torch
from typer.testing import CliRunner

from difftk.analysis.denoising_trajectory import (
    chosen_steps,
    denoising_trajectory,
    trajectory_grid,
    trajectory_tiles,
)
from difftk.cli import app
from difftk.plugins.samplers import DDIM
from difftk.plugins.schedules import Linear
from difftk.testing.denoisers import MU, STD, gaussian_denoiser

runner = CliRunner()


def test_chosen_steps_spread_from_first_to_last():
    assert chosen_steps(10, 4) == [0, 3, 6, 9]
    assert chosen_steps(3, 8) == [0, 1, 2]


def test_trajectory_keeps_the_sampler_states_and_the_grid_has_one_row_per_sample():
    sampler, schedule = DDIM(steps=10), Linear()
    denoiser = gaussian_denoiser(schedule)
    n, k = 3, 4
    noise = torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    traj = denoising_trajectory(sampler, denoiser, noise, torch.Generator().manual_seed(1),
                                None, columns=k)
    assert traj.steps == [0, 3, 6, 9] and traj.total_steps == 10
    assert traj.x_t.shape == traj.x0_hat.shape == (k, n, 1, 4, 4)
    plain = sampler.sample(denoiser, noise, torch.Generator().manual_seed(1))
    assert torch.equal(traj.sample, plain.x)  # watching the steps changes nothing
    for c in range(k):  # the x0 estimate is E[x0 | x_t] of the Gaussian data at that state
        a, s = traj.alpha[c], traj.sigma[c]
        gain = STD**2 * a / (a**2 * STD**2 + s**2)
        expected = MU + gain * (traj.x_t[c].double() - a * MU)
        assert torch.allclose(traj.x0_hat[c].double(), expected, atol=1e-5)
    sigmas = [s / a for a, s in zip(traj.alpha, traj.sigma, strict=True)]
    assert sigmas == sorted(sigmas, reverse=True)  # noise falls from column to column

    tiles = trajectory_tiles(traj)
    assert tiles.shape == (n * (2 * k + 1), 1, 4, 4)
    row, col = 1, 2 * 2  # sample 1, x_t of kept step 2
    assert torch.equal(tiles[row * (2 * k + 1) + col], traj.x_t[2, 1])
    assert torch.equal(tiles[row * (2 * k + 1) + col + 1], traj.x0_hat[2, 1])
    assert torch.equal(tiles[row * (2 * k + 1) + 2 * k], traj.sample[1])
    grid = trajectory_grid(traj)
    scale = 8  # 4-pixel tiles are drawn at least 32 pixels wide; one pixel of padding
    assert grid.shape == ((n * 5 + 1) * scale, ((2 * k + 1) * 5 + 1) * scale, 3)


def test_steps_outside_the_sampler_are_refused():
    denoiser = gaussian_denoiser(Linear())
    with pytest.raises(ValueError, match="outside the sampler's 5 steps"):
        denoising_trajectory(DDIM(steps=5), denoiser, torch.zeros(2, 1, 2, 2),
                             torch.Generator(), None, steps=[0, 5])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from pathlib import Path

    root = tmp_path_factory.mktemp("runs")
    recipe = Path(__file__).resolve().parent.parent / "recipes/toy2d.toml"
    args = ["train", str(recipe), "--no-progress"]
    for s in [f'run.out_dir="{root}"', 'run.name="traj"', "model.width=16", "model.depth=1",
              "train.batch_size=32", "train.steps=3", "log.num_samples=8", "sampler.steps=2",
              "log.val_every=0", "log.checkpoint_every=0"]:
        args += ["--set", s]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return root / "traj"


def test_plot_trajectory_writes_png_csv_and_tensorboard(run_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "traj.png"
    res = runner.invoke(app, ["plot", "trajectory", str(run_dir), "-n", "50", "--steps", "6",
                              "--columns", "3", "-o", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 0
    with open(tmp_path / "traj.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [0, 2, 5]  # of the sampler's 6 steps
    assert float(rows[-1]["x0_hat_rms_to_sample"]) < float(rows[0]["x0_hat_rms_to_sample"])
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert "analysis/trajectory" in events.Tags()["images"]


def test_plot_trajectory_refuses_a_step_outside_the_sampler_in_one_sentence(run_dir, tmp_path):
    res = runner.invoke(app, ["plot", "trajectory", str(run_dir), "--steps", "4", "--at",
                              "0,9", "-o", str(tmp_path / "t.png"), "--device", "cpu"])
    assert res.exit_code != 0
    assert "outside the sampler's 4 steps" in res.stderr and "Traceback" not in res.stderr
