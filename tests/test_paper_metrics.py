"""The paper metrics equal the packages that define them, computed offline on the same images
with the same (random) weights: pytorch-fid's features, spatial features and FID; torch-
fidelity's TF-style features, FID and Inception Score; clean-fid's resize; prdc's precision,
recall, density and coverage. Reference files round-trip in the formats those tools read."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from metric_packages import import_metric_packages, write_inception_weights
from PIL import Image
from typer.testing import CliRunner

from difftk.cli import app
from difftk.eval.inception import FIDInceptionV3
from difftk.eval.inception_input import network_input
from difftk.eval.reference_stats import read_reference

runner = CliRunner()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_inception_weights(tmp_path_factory.mktemp("w") / "pt_inception-random.pth")


@pytest.fixture(scope="module")
def net(weights):
    model = FIDInceptionV3()
    model.load_state_dict(torch.load(weights, weights_only=True), strict=False)
    return model.eval()


def _u8(seed, n, size=24, channels=3, shift=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, size, size, generator=g) * 200 + shift
    return x.clamp(0, 255).round().to(torch.uint8)


def _png_dir(folder, images):
    folder.mkdir(parents=True)
    for i, image in enumerate(images.permute(0, 2, 3, 1).numpy()):
        Image.fromarray(image).save(folder / f"{i:06d}.png")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    return (_png_dir(root / "a", _u8(1, 20)), _png_dir(root / "b", _u8(2, 20, shift=40)))


@pytest.fixture(scope="module")
def pytorch_fid_patched(weights):
    import_metric_packages()
    import pytorch_fid.inception as pfi

    state = torch.load(weights, weights_only=True)
    original = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *a, **k: state  # no download: the same random file
    yield pfi
    pfi.load_state_dict_from_url = original


def test_pytorch_fid_input_gives_pytorch_fids_pool_and_spatial_features(net, pytorch_fid_patched):
    theirs = pytorch_fid_patched.InceptionV3([3], resize_input=True, normalize_input=True,
                                             use_fid_inception=True).eval()
    spatial = {}
    block = dict(theirs.named_modules())["blocks.2.6.branch1x1"]  # Mixed_6d's 1x1 branch
    block.register_forward_hook(lambda m, i, o: spatial.update(x=o))
    images = _u8(0, 3)
    with torch.no_grad():
        pool = theirs(images.float() / 255)[0].flatten(1)  # pytorch-fid's ToTensor input
        ours = net(network_input(images, "pytorch_fid"))
    assert torch.allclose(ours.pool, pool, rtol=1e-4, atol=1e-5 * pool.abs().max())
    expect = spatial["x"][:, :7].permute(0, 2, 3, 1).flatten(1)
    assert torch.allclose(ours.spatial, expect, rtol=1e-4, atol=1e-5 * expect.abs().max())


def test_fid_of_png_folders_equals_pytorch_fid(folders, weights, pytorch_fid_patched, tmp_path):
    from pytorch_fid.fid_score import calculate_fid_given_paths, save_fid_stats

    a, b = folders
    kw = {"batch_size": 8, "device": "cpu", "dims": 2048, "num_workers": 0}
    theirs = calculate_fid_given_paths([str(a), str(b)], **kw)
    save_fid_stats([str(b), str(tmp_path / "b_pytorch_fid.npz")], **kw)  # their stats file
    ours = runner.invoke(app, ["eval", str(a), "--ref", str(tmp_path / "b_pytorch_fid.npz"),
                               "--weights", str(weights), "--inception-input", "pytorch_fid",
                               "--json"])
    assert ours.exit_code == 0, ours.output
    fid = json.loads(ours.output[ours.output.index("{"):])["metrics"]["fid"]
    assert fid == pytest.approx(theirs, rel=1e-4)
    made = runner.invoke(app, ["eval-stats", str(b), "-o", str(tmp_path / "b.npz"), "--weights",
                               str(weights), "--inception-input", "pytorch_fid"])
    assert made.exit_code == 0, made.output
    mine, their_file = read_reference(tmp_path / "b.npz"), read_reference(
        tmp_path / "b_pytorch_fid.npz")
    mu, sigma = their_file.stats["fid"]
    assert np.allclose(mine.stats["fid"][0], mu, rtol=1e-4, atol=1e-6 * np.abs(mu).max())
    assert np.allclose(mine.stats["fid"][1], sigma, rtol=1e-3, atol=1e-5 * np.abs(sigma).max())


def test_tf_input_gives_torch_fidelitys_features_fid_and_inception_score(folders, weights,
                                                                          net, tmp_path):
    import_metric_packages()
    import torch_fidelity
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    theirs = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                         feature_extractor_weights_path=str(weights))
    images = _u8(3, 3, size=37)
    with torch.no_grad():
        pool, logits = theirs(images)
        ours = net(network_input(images, "tf"))
    assert torch.allclose(ours.pool, pool, rtol=1e-4, atol=1e-5 * pool.abs().max())
    assert torch.allclose(ours.logits, logits, rtol=1e-4, atol=1e-5 * logits.abs().max())

    a, b = folders
    metrics = torch_fidelity.calculate_metrics(
        input1=str(a), input2=str(b), fid=True, isc=True, cuda=False, cache=False,
        verbose=False, feature_extractor_weights_path=str(weights), batch_size=8)
    made = runner.invoke(app, ["eval-stats", str(b), "-o", str(tmp_path / "b.npz"),
                               "--weights", str(weights)])
    assert made.exit_code == 0, made.output
    res = runner.invoke(app, ["eval", str(a), "--ref", str(tmp_path / "b.npz"), "--weights",
                              str(weights), "--metrics", "fid,is", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output[res.output.index("{"):])["metrics"]
    assert got["fid"] == pytest.approx(metrics["frechet_inception_distance"], rel=1e-4)
    assert got["is"] == pytest.approx(metrics["inception_score_mean"], rel=1e-5)
    assert got["is_std"] == pytest.approx(metrics["inception_score_std"], rel=1e-3, abs=1e-6)


def test_clean_input_resizes_as_clean_fid_does():
    import_metric_packages()
    from cleanfid.resize import build_resizer

    resize = build_resizer("clean")
    images = _u8(4, 2, size=30)
    ours = network_input(images, "clean") * 128 + 128
    for i, image in enumerate(images.permute(0, 2, 3, 1).numpy()):
        theirs = torch.from_numpy(resize(image)).permute(2, 0, 1)
        assert torch.allclose(ours[i], theirs, atol=1e-3)
    # at 299 x 299 nothing is resized: tf and clean are one input
    big = _u8(5, 1, size=299)
    assert torch.equal(network_input(big, "clean"), network_input(big, "tf"))


def test_precision_recall_density_coverage_equal_the_prdc_package():
    from prdc import compute_prdc

    from difftk.eval.prdc import prdc

    g = np.random.default_rng(0)
    real, fake = g.normal(size=(300, 16)), g.normal(0.3, 1.2, size=(250, 16))
    theirs = compute_prdc(real, fake, nearest_k=3)
    ours = prdc(torch.from_numpy(real), torch.from_numpy(fake), k=3)
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(float(theirs[key]), abs=1e-12), key


def test_reference_files_round_trip_in_every_format(tmp_path):
    from difftk.eval.reference_stats import ReferenceStats, write_reference

    g = np.random.default_rng(1)
    mu, a = g.normal(size=5), g.normal(size=(5, 5))
    ref = ReferenceStats(stats={"fid": (mu, a @ a.T), "fd_dinov2": (mu * 2, a @ a.T * 2)},
                         meta={"convention": "tf"})
    write_reference(tmp_path / "r.npz", ref)
    with np.load(tmp_path / "r.npz") as f:  # pytorch-fid and EDM read exactly these keys
        assert np.array_equal(f["mu"], mu) and np.array_equal(f["sigma"], a @ a.T)
    write_reference(tmp_path / "r.pkl", ref)
    with open(tmp_path / "r.pkl", "rb") as f:  # EDM2's layout
        assert np.array_equal(pickle.load(f)["fd_dinov2"]["mu"], mu * 2)
    back = read_reference(tmp_path / "r.pkl")
    assert np.array_equal(back.stats["fid"][1], a @ a.T) and set(back.stats) == {"fid",
                                                                                "fd_dinov2"}
    with open(tmp_path / "evil.pkl", "wb") as f:  # a pickle naming code is refused, not run
        pickle.dump({"fid": {"mu": mu, "sigma": a}, "x": print}, f)
    res = runner.invoke(app, ["eval", str(tmp_path), "--ref", str(tmp_path / "evil.pkl")])
    assert res.exit_code != 0 and "not a readable statistics file" in res.output
    assert "Traceback" not in res.output


def test_an_adm_reference_batch_gives_precision_recall_from_its_images(weights, tmp_path):
    images = _u8(6, 12)
    samples = _u8(7, 12)
    np.savez(tmp_path / "adm_ref.npz", arr_0=images.permute(0, 2, 3, 1).numpy(),
             mu=np.zeros(2048), sigma=np.eye(2048))
    np.savez(tmp_path / "samples.npz", arr_0=samples.permute(0, 2, 3, 1).numpy())
    # the same reference images as a folder, through eval-stats' pool features
    made = runner.invoke(app, ["eval-stats", str(_png_dir(tmp_path / "ref", images)), "-o",
                               str(tmp_path / "ref.npz"), "--weights", str(weights),
                               "--metrics", "prdc"])
    assert made.exit_code == 0, made.output
    scores = []
    for ref in ("adm_ref.npz", "ref.npz"):
        res = runner.invoke(app, ["eval", str(tmp_path / "samples.npz"), "--ref",
                                  str(tmp_path / ref), "--weights", str(weights),
                                  "--metrics", "prdc", "--json"])
        assert res.exit_code == 0, res.output
        scores.append(json.loads(res.output[res.output.index("{"):])["metrics"])
    assert set(scores[0]) == {"precision", "recall", "density", "coverage"}
    assert scores[0] == scores[1]  # arr_0's points are the images' own features


def test_samples_as_npz_score_as_their_png_files(folders, weights, tmp_path):
    a, b = folders
    images = np.stack([np.asarray(Image.open(p)) for p in sorted(a.glob("*.png"))])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).double() / 255  # difftk npz in [0, 1]
    np.savez(tmp_path / "s.npz", samples=x.numpy(), value_range=np.array([0.0, 1.0]))
    made = runner.invoke(app, ["eval-stats", str(b), "-o", str(tmp_path / "b.npz"),
                               "--weights", str(weights), "--metrics", "prdc"])
    assert made.exit_code == 0, made.output
    scores = []
    for source in (a, tmp_path / "s.npz"):  # the Inception Score reads every sample's logits
        res = runner.invoke(app, ["eval", str(source), "--ref", str(tmp_path / "b.npz"),
                                  "--weights", str(weights), "--metrics", "is", "--json"])
        assert res.exit_code == 0, res.output
        scores.append(json.loads(res.output[res.output.index("{"):])["metrics"])
    assert scores[0] == scores[1]


def test_features_of_a_file_set_are_cached_and_recomputed_when_a_file_changes(weights, tmp_path):
    folder = _png_dir(tmp_path / "c", _u8(8, 6))
    cache = tmp_path / "cache"
    args = ["eval-stats", str(folder), "--weights", str(weights), "--cache", str(cache)]
    first = runner.invoke(app, [*args, "-o", str(tmp_path / "1.npz")])
    assert first.exit_code == 0, first.output
    assert len(list(cache.glob("*.npz"))) == 1
    again = runner.invoke(app, [*args, "-o", str(tmp_path / "2.npz")])
    assert again.exit_code == 0
    assert np.array_equal(read_reference(tmp_path / "1.npz").stats["fid"][1],
                          read_reference(tmp_path / "2.npz").stats["fid"][1])
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(folder / "000000.png")
    runner.invoke(app, [*args, "-o", str(tmp_path / "3.npz")])
    assert len(list(cache.glob("*.npz"))) == 2  # a new key: the file set changed


def test_fd_dinov2_prepares_images_as_edm2_and_reads_a_saved_model(tmp_path):
    import torch.nn.functional as F

    import_metric_packages()  # transformers imports torchvision where it is installed
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    model = Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, image_size=56, patch_size=14)).eval()
    model.save_pretrained(tmp_path / "dino")
    images = _u8(9, 5, size=20)
    folder = _png_dir(tmp_path / "imgs", images)
    res = runner.invoke(app, ["eval-stats", str(folder), "-o", str(tmp_path / "d.npz"),
                              "--metrics", "fd_dinov2", "--dinov2", str(tmp_path / "dino")])
    assert res.exit_code == 0, res.output
    # EDM2's DINOv2Detector(resize_mode="torch"), transcribed
    x = F.interpolate(images.to(torch.float32), size=(224, 224), mode="bicubic", antialias=True)
    x = x.to(torch.float32) / 255
    x = x - torch.tensor([0.485, 0.456, 0.406]).reshape(1, -1, 1, 1)
    x = x / torch.tensor([0.229, 0.224, 0.225]).reshape(1, -1, 1, 1)
    with torch.no_grad():
        features = model(pixel_values=x).pooler_output.double().numpy()
    mu, sigma = read_reference(tmp_path / "d.npz").stats["fd_dinov2"]
    assert np.allclose(mu, features.mean(0), atol=1e-5)
    assert np.allclose(sigma, np.cov(features, rowvar=False), atol=1e-5)


def test_metrics_without_their_network_or_reference_are_one_sentence(weights, folders, tmp_path):
    a, _ = folders
    for args, words in [
        (["eval-stats", str(a), "-o", str(tmp_path / "r.npz")], "needs the Inception weights"),
        (["eval-stats", str(a), "--metrics", "fid,bogus", "--weights", str(weights)],
         'unknown metric "bogus"'),
        (["eval-stats", str(a), "--metrics", "fd_dinov2"], "needs a saved DINOv2 model"),
        (["eval", str(a), "--ref", str(tmp_path / "missing.npz"), "--weights", str(weights)],
         "no such reference statistics file"),
        (["eval", str(a), "--metrics", "fid"], "give --ref FILE"),
    ]:
        res = runner.invoke(app, args)
        assert res.exit_code != 0 and words in res.output, (args, res.output)
        assert "Traceback" not in res.output


def _torchrun(*args):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc-per-node=2", "-m", "difftk", *args, "--device", "cpu"],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": path})
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_two_processes_give_the_statistics_and_scores_of_one(folders, weights, tmp_path):
    from cli_runs import train_run
    from conftest import ROOT

    _, b = folders
    stats = ["eval-stats", str(b), "--weights", str(weights), "--metrics", "fid,prdc",
             "--batch-size", "3"]
    one = runner.invoke(app, [*stats, "-o", str(tmp_path / "one.npz")])
    assert one.exit_code == 0, one.output
    _torchrun(*stats, "-o", str(tmp_path / "two.npz"))
    r1, r2 = read_reference(tmp_path / "one.npz"), read_reference(tmp_path / "two.npz")
    for a, c in zip(r1.stats["fid"], r2.stats["fid"], strict=True):
        assert np.allclose(a, c, rtol=1e-12, atol=1e-12 * np.abs(a).max())
    assert np.array_equal(r1.pool_features, r2.pool_features)

    run = train_run(ROOT, tmp_path, "recipes/edm.toml", "tiny", [
        "train.batch_size=16", "model.channels=8", "model.channel_mult=[1]",
        "model.num_res_blocks=1", "model.attention_resolutions=[]", "log.val_every=0",
        "log.num_samples=4", "log.checkpoint_every=0", "log.tensorboard=false",
        'precision.name="fp32"', "train.steps=2"])
    score = ["eval", str(run), "-n", "11", "--batch-size", "4", "--steps", "3", "--ref",
             str(tmp_path / "one.npz"), "--weights", str(weights), "--metrics", "is,prdc",
             "--json"]
    res = runner.invoke(app, score)
    assert res.exit_code == 0, res.output
    alone = json.loads(res.output[res.output.index("{"):])["metrics"]
    out = _torchrun(*score)
    together = json.loads(out[out.index("{"):])["metrics"]
    assert together == pytest.approx(alone, rel=1e-6)
