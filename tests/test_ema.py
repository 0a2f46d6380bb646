"""EMA rules against closed forms; post-hoc EMA against its formula and EDM2's reconstruction."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from typer.testing import CliRunner

from difftk.cli import app
from difftk.optim.ema import EmaModel
from difftk.optim.power_ema import gamma_to_sigma_rel, sigma_rel_to_gamma, solve_power_coefficients
from difftk.plugins.ema import FixedEma, PowerEma, WarmupEma
from difftk.train.posthoc_ema import beta_weights

runner = CliRunner()


def test_fixed_ema_follows_its_closed_form_and_reaches_constant_weights():
    model = nn.Linear(3, 2)
    ema = EmaModel(model, FixedEma(beta=0.9))
    e0 = [p.detach().clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    for step in range(1, 41):
        ema.update(model, step, 8)
    for e, start, w in zip(ema.module.parameters(), e0, model.parameters(), strict=True):
        # e_n = w + beta^n (e_0 - w)
        assert torch.allclose(e, w + 0.9**40 * (start - w), atol=1e-6)
    for step in range(41, 400):
        ema.update(model, step, 8)
    assert all(torch.allclose(e, w, atol=1e-6) for e, w in
               zip(ema.module.parameters(), model.parameters(), strict=True))


@pytest.mark.parametrize("rule", [WarmupEma(), PowerEma()])
def test_step_dependent_rules_start_at_the_weights(rule):
    model = nn.Linear(3, 2)
    ema = EmaModel(model, rule)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-3.0)
    ema.update(model, 1, 8)  # beta(1) = 0: the first update copies the weights
    for shadow in ema.shadows.values():
        assert all(torch.equal(e, w) for e, w in
                   zip(shadow.parameters(), model.parameters(), strict=True))
    for step in range(2, 30):
        ema.update(model, step, 8)
    assert all(torch.equal(e, w) for e, w in
               zip(ema.module.parameters(), model.parameters(), strict=True))


def test_warmup_decay_matches_published_reference_points():
    # diffusers EMAModel(use_ema_warmup=True) docstring / k-diffusion EMAWarmup
    assert WarmupEma(power=2 / 3).decay(1000, 1) == pytest.approx(0.99, abs=1e-9)
    assert WarmupEma(power=2 / 3).decay(31623, 1) == pytest.approx(0.999, abs=1e-6)
    assert WarmupEma(power=3 / 4).decay(1000, 1) == pytest.approx(0.99438, abs=1e-5)
    assert WarmupEma(power=3 / 4).decay(10000, 1) == pytest.approx(0.999, abs=1e-6)
    assert WarmupEma().decay(10**9, 1) == 0.9999  # capped at max_decay


def test_sigma_rel_and_gamma_are_inverse():
    # EDM2: gamma = 16.97 for sigma_rel 0.05, 6.94 for 0.10
    assert sigma_rel_to_gamma(0.05) == pytest.approx(16.97, abs=0.01)
    assert sigma_rel_to_gamma(0.10) == pytest.approx(6.94, abs=0.01)
    for s in (0.01, 0.05, 0.13, 0.25):
        assert gamma_to_sigma_rel(sigma_rel_to_gamma(s)) == pytest.approx(s, rel=1e-9)


def _track(trajectory: np.ndarray, gamma: float) -> np.ndarray:
    """Online power EMA (beta_t = (1 - 1/t)^(gamma+1)) of a trajectory; value after each step."""
    ema, out = 0.0, []
    for t, theta in enumerate(trajectory, start=1):
        beta = (1 - 1 / t) ** (gamma + 1)
        ema = beta * ema + (1 - beta) * theta
        out.append(ema)
    return np.array(out)


def test_power_reconstruction_recovers_an_untracked_profile():
    rng = np.random.default_rng(0)
    steps, every = 2000, 100
    # a noisy optimisation-like trajectory: a decaying drift plus a random walk
    t = np.arange(1, steps + 1)
    trajectory = 3 * np.exp(-t / 400) + np.cumsum(rng.normal(0, 0.05, steps))
    stored = [0.05, 0.10]
    tracks = {s: _track(trajectory, sigma_rel_to_gamma(s)) for s in stored}
    times, gammas, values = [], [], []
    for k in range(every, steps + 1, every):
        for s in stored:
            times.append(k)
            gammas.append(sigma_rel_to_gamma(s))
            values.append(tracks[s][k - 1])
    for wanted in (0.03, 0.075, 0.2):  # neither stored; one below, one between, one above
        x = solve_power_coefficients(times, gammas, steps, sigma_rel_to_gamma(wanted))
        reconstructed = float(np.dot(x, values))
        truth = _track(trajectory, sigma_rel_to_gamma(wanted))[-1]
        spread = abs(tracks[0.05][-1] - tracks[0.10][-1])
        assert abs(reconstructed - truth) < 0.05 * max(spread, 1e-3) + 2e-3, wanted
    # a stored profile is reproduced by (almost) its own snapshot alone
    x = solve_power_coefficients(times, gammas, steps, sigma_rel_to_gamma(0.10))
    assert x[-1] == pytest.approx(1.0, abs=1e-6)


def _fake_run(root, values, profiles=None):
    for i, v in enumerate(values, start=1):
        d = root / "snapshots" / f"{i * 10:08d}"
        d.mkdir(parents=True)
        save_file({"w": torch.full((2, 2), float(v))}, str(d / "model.safetensors"))
        (d / "snapshot.json").write_text(json.dumps({"step": i * 10, "profiles": profiles or {}}))


def test_posthoc_beta_command_equals_the_closed_form(tmp_path):
    values = [1.0, 2.0, 4.0, 8.0, 16.0]
    _fake_run(tmp_path / "run", values)
    out = tmp_path / "avg.safetensors"
    res = runner.invoke(app, ["ema", str(tmp_path / "run"), "--beta", "0.5", "-o", str(out)])
    assert res.exit_code == 0, res.output
    # sum_i 0.5^(5-i) 2^(i-1) / sum_i 0.5^(5-i) = (sum_i 4^i / 64) / (sum_i 2^i / 32), geometric sums
    expected = ((4**6 - 4) / 3 / 64) / ((2**6 - 2) / 32)
    assert expected == 11.0
    assert torch.allclose(load_file(str(out))["w"], torch.full((2, 2), expected))
    assert np.allclose(beta_weights(3, 0.5), np.array([1, 2, 4]) / 7)


def test_posthoc_sigma_rel_refuses_runs_without_power_snapshots(tmp_path):
    _fake_run(tmp_path / "run", [1.0, 2.0])
    res = runner.invoke(app, ["ema", str(tmp_path / "run"), "--sigma-rel", "0.05", "-o",
                              str(tmp_path / "x.safetensors")])
    assert res.exit_code == 1 and "no power-EMA profiles" in res.stderr
    res = runner.invoke(app, ["ema", str(tmp_path / "nowhere"), "--beta", "0.9", "-o",
                              str(tmp_path / "x.safetensors")])
    assert res.exit_code == 1 and "no such run directory" in res.stderr


def _saved_run(root, values):
    from difftk.run.checkpoint_writing import save_snapshot

    for i, v in enumerate(values, start=1):
        save_snapshot(root / "snapshots", i * 10, {"model": {"w": torch.full((2, 2), float(v))}},
                      {"step": i * 10, "profiles": {}})


@pytest.mark.parametrize("damage,words", [
    ("flip", "is damaged (its checksum does not match"),
    ("nan", "hold NaN or inf"),
    ("step", "snapshot.json is damaged or edited"),
])
def test_a_damaged_snapshot_is_left_out_by_name_or_refused_with_strict(tmp_path, damage, words):
    _saved_run(tmp_path / "run", [1.0, 2.0, 4.0])
    bad = tmp_path / "run" / "snapshots" / "00000020"
    if damage == "flip":
        data = bytearray((bad / "model.safetensors").read_bytes())
        data[-3] ^= 0x10
        (bad / "model.safetensors").write_bytes(bytes(data))
    elif damage == "nan":
        for legacy in (tmp_path / "run" / "snapshots").iterdir():  # records without checksums
            meta = json.loads((legacy / "snapshot.json").read_text())
            (legacy / "snapshot.json").write_text(json.dumps(
                {"step": meta["step"], "profiles": {}}))
        save_file({"w": torch.full((2, 2), float("nan"))}, str(bad / "model.safetensors"))
    else:
        meta = json.loads((bad / "snapshot.json").read_text())
        (bad / "snapshot.json").write_text(json.dumps(meta | {"step": "20"}))
    out = tmp_path / "avg.safetensors"
    res = runner.invoke(app, ["ema", str(tmp_path / "run"), "--beta", "0.5", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "left out the EMA snapshot" in res.stderr and "00000020" in res.stderr
    assert words in res.stderr
    # the average of the two intact snapshots, 1 and 4 with weights 1/3 and 2/3
    assert torch.allclose(load_file(str(out))["w"], torch.full((2, 2), 3.0))
    strict = runner.invoke(app, ["ema", str(tmp_path / "run"), "--beta", "0.5", "-o", str(out),
                                 "--strict"])
    assert strict.exit_code == 1 and words in strict.stderr and "Traceback" not in strict.output


def test_sample_refuses_a_weights_file_with_nan(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"w": torch.full((2,), float("nan"))}, str(path),
              metadata={"difftk_recipe": "x", "difftk_spec": "{}"})
    res = runner.invoke(app, ["sample", str(path), "-o", str(tmp_path / "s.png")])
    assert res.exit_code == 1 and "hold NaN or inf" in res.stderr


def test_per_step_beta_is_the_per_snapshot_beta_to_the_interval(tmp_path):
    """Snapshots every 10 steps: --beta b --per-step weights them as --beta b^10 does, and an
    uneven spacing weights each snapshot by b^(steps to the last)."""
    from difftk.train.posthoc_ema import step_beta_weights

    _fake_run(tmp_path / "run", [1.0, 2.0, 4.0, 8.0, 16.0])
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert runner.invoke(app, ["ema", str(tmp_path / "run"), "--beta", str(0.5 ** 0.1),
                               "--per-step", "-o", str(a)]).exit_code == 0
    assert runner.invoke(app, ["ema", str(tmp_path / "run"), "--beta", "0.5", "-o",
                               str(b)]).exit_code == 0
    assert torch.allclose(load_file(str(a))["w"], load_file(str(b))["w"], rtol=1e-6)
    assert np.allclose(step_beta_weights([10, 30, 40], 0.5), np.array([0.5**30, 0.5**10, 1])
                       / (0.5**30 + 0.5**10 + 1))
    res = runner.invoke(app, ["ema", str(tmp_path / "run"), "--sigma-rel", "0.05",
                              "--per-step", "-o", str(a)])
    assert res.exit_code == 1 and "--per-step reads --beta" in res.output
