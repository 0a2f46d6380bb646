"""Damaged checkpoints are detected, never used: checksums, metadata, non-finite weights,
dangling or looping `latest`, disk errors. Each problem is one sentence."""

import errno
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from difftk.cli import app
from difftk.errors import CheckpointError, DifftkError
from difftk.recipe import load_recipe
from difftk.run import checkpoint as ckpt_io
from difftk.run import checkpoint_writing as ckpt_writing
from difftk.run import durable_files
from difftk.run.runtime import make_runtime
from difftk.train.session import run_training

runner = CliRunner()
SETS = ["train.steps=6", "log.checkpoint_every=2", "log.keep_last=3", "log.every=2",
        "log.val_every=0", "log.sample_every=0", "log.num_samples=4", "log.tensorboard=false",
        "sampler.steps=2", "model.width=16", "model.depth=1", "train.batch_size=32"]


def recipe(root, out, name, *extra):
    return load_recipe(root / "recipes/toy2d.toml",
                       [*SETS, *extra, f'run.out_dir="{out}"', f'run.name="{name}"'], warn=False)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    from conftest import ROOT

    out = tmp_path_factory.mktemp("integrity")
    run_training(recipe(ROOT, out, "run"), make_runtime("cpu"), progress=False)
    return out / "run"


@pytest.fixture
def run(pristine, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(pristine, copy, symlinks=True)
    return copy


def flip(path, offset=-8):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def rewrite_state(ck, change, seal=True):
    """Edit state.json; ``seal``: recompute its own checksum too (as a deliberate forger
    would), so what is tested is the check of the edited field itself."""
    from difftk.run.state_record import SELF_KEY, sealed

    state = json.loads((ck / "state.json").read_text())
    new = {k: v for k, v in change(state).items() if k != SELF_KEY}
    (ck / "state.json").write_text(json.dumps(sealed(new) if seal else new | {
        SELF_KEY: state[SELF_KEY]}))


def reseal(ck, filename):
    """Make a damaged file's checksum match again (what a careless edit would do)."""
    digest = "sha256:" + hashlib.sha256((ck / filename).read_bytes()).hexdigest()
    rewrite_state(ck, lambda s: s | {"files": s["files"] | {filename: digest}})


def nan_weights(ck):
    for name in ("model", "ema"):
        weights = load_file(str(ck / f"{name}.safetensors"))
        save_file({k: torch.full_like(v, float("nan")) for k, v in weights.items()},
                  str(ck / f"{name}.safetensors"))
        reseal(ck, f"{name}.safetensors")


CORRUPTIONS = {
    "model byte flipped": lambda ck: flip(ck / "model.safetensors"),
    "ema byte flipped": lambda ck: flip(ck / "ema.safetensors"),
    "optimizer byte flipped": lambda ck: flip(ck / "optimizer.safetensors"),
    "rng byte flipped": lambda ck: flip(ck / "rng.safetensors"),
    "recipe byte flipped": lambda ck: flip(ck / "recipe.toml", 10),
    "model truncated": lambda ck: (ck / "model.safetensors").write_bytes(
        (ck / "model.safetensors").read_bytes()[:100]),
    "ema deleted": lambda ck: (ck / "ema.safetensors").unlink(),
    "state.json garbage": lambda ck: (ck / "state.json").write_text("{not json"),
    "state.json a list": lambda ck: (ck / "state.json").write_text("[1, 2]"),
    "state.json without step": lambda ck: rewrite_state(ck, lambda s: {
        k: v for k, v in s.items() if k != "step"}),
    "state.json without spec": lambda ck: rewrite_state(ck, lambda s: {
        k: v for k, v in s.items() if k != "spec"}),
    "state.json step not an integer": lambda ck: rewrite_state(ck, lambda s: s | {"step": "6x"}),
    "state.json without checksums": lambda ck: rewrite_state(ck, lambda s: {
        k: v for k, v in s.items() if k != "files"}),
    "recipe unparsable": lambda ck: ((ck / "recipe.toml").write_text("[[[ nope"),
                                     reseal(ck, "recipe.toml")),
    "rng lacks a stream": lambda ck: (
        save_file({k: v for k, v in load_file(str(ck / "rng.safetensors")).items()
                   if k != "torch_cpu"}, str(ck / "rng.safetensors")),
        reseal(ck, "rng.safetensors")),
    "weights all NaN": nan_weights,
    "Adam moments NaN": lambda ck: (
        save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                   for k, v in load_file(str(ck / "optimizer.safetensors")).items()},
                  str(ck / "optimizer.safetensors")),
        reseal(ck, "optimizer.safetensors")),
    "state.json step edited": lambda ck: rewrite_state(ck, lambda s: s | {"step": 5}, seal=False),
    "state.json betas bit flipped": lambda ck: rewrite_state(
        ck, lambda s: s | {"train_seconds": s["train_seconds"] + 1e-9}, seal=False),
    "state.json step a list": lambda ck: rewrite_state(ck, lambda s: s | {"step": [6]}),
    "state.json step 10^30": lambda ck: rewrite_state(ck, lambda s: s | {"step": 10 ** 30}),
    "state.json shape an int": lambda ck: rewrite_state(
        ck, lambda s: s | {"spec": s["spec"] | {"shape": 2}}),
    "state.json shape 2^31": lambda ck: rewrite_state(
        ck, lambda s: s | {"spec": s["spec"] | {"shape": [2 ** 31, 2]}}),
    "state.json num_classes a string": lambda ck: rewrite_state(
        ck, lambda s: s | {"spec": s["spec"] | {"num_classes": "10"}}),
    "state.json train_seconds a string": lambda ck: rewrite_state(
        ck, lambda s: s | {"train_seconds": "long"}),
    "step directory deleted (latest dangles)": lambda ck: shutil.rmtree(ck),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_damaged_latest_falls_back_to_the_newest_intact_one_with_a_sentence(run, case, root):
    CORRUPTIONS[case](run / "checkpoints" / "00000006")
    warnings = []
    ck = ckpt_io.load_intact(run, warn=warnings.append)
    assert ck.path.name == "00000004" and ck.step == 4
    assert len(warnings) == 1 and "00000006" in warnings[0] and "using 00000004" in warnings[0]
    # --resume goes on from step 4 to the end
    trainer, _ = run_training(recipe(root, run.parent, "run"), make_runtime("cpu"), "yes",
                              progress=False)
    assert trainer.step == 6 and ckpt_io.checkpoint_problem(run / "checkpoints/00000006") is None


METADATA = {  # the step directory named explicitly: no fallback, one sentence
    "state.json a list": "state.json holds a list, not an object",
    "state.json without step": "state.json has no 'step'",
    "state.json without spec": "state.json has no 'spec'",
    "state.json step not an integer": "state.json's 'step' is invalid (Input should be a "
                                      "valid integer)",
    "state.json step edited": "state.json is damaged or edited",
    "state.json shape 2^31": "state.json's 'spec.shape' is invalid",
    "state.json num_classes a string": "state.json's 'spec.num_classes' is invalid",
    "state.json garbage": "state.json is not valid JSON",
    "recipe unparsable": "recipe.toml: is not a readable TOML recipe",
    "rng lacks a stream": "rng.safetensors: lacks the random stream(s) torch_cpu",
    "model byte flipped": "model.safetensors: is damaged or truncated",
    "ema deleted": "ema.safetensors: missing from the checkpoint",
}


@pytest.mark.parametrize("case", METADATA)
def test_metadata_and_file_errors_are_one_sentence(run, case):
    ck = run / "checkpoints" / "00000006"
    CORRUPTIONS[case](ck)
    with pytest.raises(CheckpointError) as info:
        ckpt_io.load_intact(ck)
    assert METADATA[case] in str(info.value) and "\n" not in str(info.value)
    assert "intact checkpoints beside it: 00000002, 00000004" in str(info.value)


def test_looping_latest_names_the_intact_checkpoints(run):
    latest = run / "checkpoints" / "latest"
    latest.unlink()
    os.symlink("latest", latest)
    warnings = []
    assert ckpt_io.load_intact(run, warn=warnings.append).step == 6
    assert "latest: is a link that loops" in warnings[0]
    for step in ("00000002", "00000004", "00000006"):
        flip(run / "checkpoints" / step / "model.safetensors")
    with pytest.raises(CheckpointError, match="no intact checkpoint .*loops.*00000006.*00000002"):
        ckpt_io.load_intact(run)


def test_sample_skips_damaged_refuses_nan_and_needs_no_optimizer(run, tmp_path):
    ck = run / "checkpoints"
    (ck / "00000006" / "optimizer.safetensors").unlink()
    res = runner.invoke(app, ["sample", str(ck / "00000006"), "-n", "2", "--steps", "2",
                              "-o", str(tmp_path / "a.npz")])
    assert res.exit_code == 0, res.stderr
    nan_weights(ck / "00000004")
    res = runner.invoke(app, ["sample", str(ck / "00000004"), "-n", "2", "-o", str(tmp_path / "b.npz")])
    assert res.exit_code == 1 and "hold NaN or inf" in res.stderr
    flip(ck / "00000006" / "ema.safetensors")
    res = runner.invoke(app, ["sample", str(run), "-n", "2", "--steps", "2",
                              "-o", str(tmp_path / "c.npz")])
    assert res.exit_code == 0, res.stderr
    assert "00000006" in res.stderr and "using 00000002" in res.stderr
    assert "from step 2 " in res.stdout


def test_resaving_an_intact_step_keeps_it_and_a_damaged_one_is_swapped_whole(run):
    ck = run / "checkpoints" / "00000006"
    before = {p.name: p.stat().st_ino for p in ck.iterdir()}
    loaded = ckpt_io.load_checkpoint(ck)
    ckpt_writing.save_checkpoint(run / "checkpoints", 6, loaded.tensors, loaded.state,
                            loaded.recipe_toml, keep_last=3)
    assert {p.name: p.stat().st_ino for p in ck.iterdir()} == before  # not written into
    flip(ck / "model.safetensors")
    ckpt_writing.save_checkpoint(run / "checkpoints", 6, loaded.tensors, loaded.state,
                            loaded.recipe_toml, keep_last=3)
    assert ckpt_io.checkpoint_problem(ck) is None
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]


def test_nonfinite_weights_are_never_saved(run):
    loaded = ckpt_io.load_checkpoint(run / "checkpoints" / "00000006")
    loaded.tensors["model"] = {k: v * float("nan") for k, v in loaded.tensors["model"].items()}
    with pytest.raises(ckpt_writing.NonFiniteWeightsError,
                       match=r"step 8 hold NaN .*\(00000006\) is intact"):
        ckpt_writing.save_checkpoint(run / "checkpoints", 8, loaded.tensors, loaded.state,
                                loaded.recipe_toml, keep_last=3)
    assert not (run / "checkpoints" / "00000008").exists()


def test_disk_full_during_a_checkpoint_is_one_sentence_and_keeps_the_last(root, tmp_path,
                                                                          monkeypatch):
    written = []
    real_write = durable_files.write_file

    def fill_up(path, data):
        written.append(path)
        if len(written) > 8:  # the run's recipe.toml, then the first checkpoint's files
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, data)

    monkeypatch.setattr(durable_files, "write_file", fill_up)
    with pytest.raises(DifftkError, match=r"could not write checkpoint 00000004 \(.*No space "
                                          r"left on device\); the newest good checkpoint "
                                          r"\(00000002\) is intact"):
        run_training(recipe(root, tmp_path, "full"), make_runtime("cpu"), progress=False)
    monkeypatch.setattr(durable_files, "write_file", real_write)
    trainer, _ = run_training(recipe(root, tmp_path, "full"), make_runtime("cpu"), "auto",
                              progress=False)  # --resume-or-start: space again, goes on
    assert trainer.step == 6


@pytest.mark.parametrize("blocker", ["out_dir", "run", "checkpoints"])
def test_a_file_where_a_directory_belongs_is_one_sentence(root, tmp_path, blocker):
    out = tmp_path / "out"
    target = {"out_dir": out, "run": out / "r", "checkpoints": out / "r" / "checkpoints"}[blocker]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("a file")
    with pytest.raises(DifftkError) as info:
        run_training(recipe(root, out, "r"), make_runtime("cpu"), progress=False)
    assert "\n" not in str(info.value) and str(target) in str(info.value)


def unwritable_folder(tmp_path) -> Path:
    """A folder this process may not write into: a read-only one (0555); for root, who
    writes into those, the top of sysfs, where the kernel refuses new files to everyone."""
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    assert Path("/sys/kernel").is_dir(), "sysfs is not mounted at /sys"
    return Path("/sys")


def test_read_only_out_dir_and_sample_output_are_one_sentence(root, run, tmp_path):
    ro = unwritable_folder(tmp_path)
    refused = "Permission denied|Operation not permitted"
    with pytest.raises(DifftkError, match=refused) as info:
        run_training(recipe(root, ro, "r"), make_runtime("cpu"), progress=False)
    assert "\n" not in str(info.value) and str(ro / "r") in str(info.value)
    res = runner.invoke(app, ["sample", str(run), "-n", "2", "-o", str(ro / "x.png")])
    assert res.exit_code == 1 and re.search(refused, res.stderr) and "Traceback" not in res.stderr


def test_sample_output_under_a_file_is_one_sentence(run, tmp_path):
    (tmp_path / "f").write_text("")
    res = runner.invoke(app, ["sample", str(run), "-n", "2", "--steps", "2",
                              "-o", str(tmp_path / "f" / "x.png")])
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    assert str(tmp_path / "f") in res.stderr


def test_a_moved_run_resumes(run, root, tmp_path):
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    shutil.move(run, moved)
    trainer, _ = run_training(recipe(root, moved.parent, "renamed", "train.steps=8"),
                              make_runtime("cpu"), "yes", progress=False)
    assert trainer.step == 8


@pytest.fixture
def tmpfs(tmp_path):
    """A tiny tmpfs (root with mount rights only); yields (mount point, remount-read-only)."""
    import subprocess

    point = tmp_path / "mnt"
    point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(point)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")

    def read_only():
        subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
    yield point, read_only
    subprocess.run(["umount", str(point)], check=False)


def test_real_full_and_read_only_disks_are_one_sentence(root, run, tmpfs):
    point, read_only = tmpfs
    with pytest.raises(DifftkError) as info:
        run_training(recipe(root, point, "r", "model.width=64"), make_runtime("cpu"),
                     progress=False)
    message = str(info.value)
    assert "No space left on device" in message and "\n" not in message
    found, _ = ckpt_io.newest_intact(point / "r" / "checkpoints")
    assert (found is None) == ("no intact checkpoint exists" in message)
    for left in ckpt_io.step_dirs(point / "r" / "checkpoints"):  # what a full disk leaves
        assert ckpt_io.checkpoint_problem(left) is None, left   # verifies, every one
    with pytest.raises(DifftkError) as again:  # the resume on the same full disk
        run_training(recipe(root, point, "r", "model.width=64"), make_runtime("cpu"), "auto",
                     progress=False)
    assert "No space left on device" in str(again.value) and "\n" not in str(again.value)
    read_only()
    with pytest.raises(DifftkError, match="Read-only file system"):
        run_training(recipe(root, point, "other"), make_runtime("cpu"), progress=False)
    res = runner.invoke(app, ["sample", str(run), "-n", "2", "--steps", "2",
                              "-o", str(point / "x.png")])
    assert res.exit_code == 1 and "Read-only file system" in res.stderr


def test_a_checkpoint_pruned_while_it_is_read_is_read_again_not_reported(run, monkeypatch):
    real = ckpt_io.load_checkpoint
    pruned = []

    def prune_first(path, *args, **kwargs):
        # while 00000006 is read, training points latest at another checkpoint and prunes 6
        # (keep_last = 1); 00000004 stands in for the newer one
        if not pruned and Path(path).name == "00000006":
            latest = Path(path).parent / "latest"
            latest.unlink()
            latest.symlink_to("00000004")
            shutil.rmtree(path)
            pruned.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(ckpt_io, "load_checkpoint", prune_first)
    warnings = []
    ck = ckpt_io.load_intact(run, groups=("model", "ema"), warn=warnings.append)
    assert pruned and ck.step == 4 and warnings == []
