"""FID on learned features: the FID Inception network definition loads a weights file the
user brings (here: the same network with random weights, saved to a temporary file) and
gives 2048 features; FID of a set with itself is ~0 and grows for a different set."""

import numpy as np
import pytest
import torch
from metric_packages import write_inception_weights
from typer.testing import CliRunner

from difftk.cli import app
from difftk.errors import DifftkError
from difftk.eval.features import feature_extractor, load_feature_network
from difftk.eval.frechet_samples import frechet_distance_of_samples
from difftk.eval.inception import FEATURE_DIM
from difftk.eval.metrics import frechet_distance, sample_metrics


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    return write_inception_weights(tmp_path_factory.mktemp("weights") / "pt_inception-random.pth")


def _images(seed, n=6, channels=3, shift=0.0, size=16):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, channels, size, size, generator=g) * 2 - 1) * 0.8 + shift


def test_the_network_loads_the_file_and_gives_2048_features(weights_file):
    net = load_feature_network("inception", weights_file)
    assert not net.training
    loaded = net.state_dict()
    saved = torch.load(weights_file, weights_only=True)
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())
    features = feature_extractor(net, batch_size=2)(_images(0, n=3))
    assert features.shape == (3, FEATURE_DIM)
    assert features.std(0).mean() > 1e-3  # the random network still separates images
    grey = feature_extractor(net)(_images(0, n=1, channels=1))
    assert grey.shape == (1, FEATURE_DIM)  # one-channel images are read as RGB


def test_fid_of_a_set_with_itself_is_zero_and_differs_for_another(weights_file):
    extract = feature_extractor(load_feature_network("inception", weights_file))
    fa, fb = extract(_images(1, n=4)), extract(_images(2, n=4, shift=0.2))
    same, other = frechet_distance_of_samples(fa, fa), frechet_distance_of_samples(fa, fb)
    assert other > 0 and abs(same) < 1e-9 * other


def test_sample_metrics_add_fid_and_kid_on_the_features_given():
    def extract(images, pixel_range=None):  # a cheap stand-in network: channel means, stds
        flat = images.flatten(2)
        return torch.cat([flat.mean(2), flat.std(2)], 1).double().numpy()

    a, b = _images(1, n=12, size=4), _images(2, n=12, shift=0.3, size=4)
    out = sample_metrics(a, b, "image", {"toy": extract})
    assert out["toy_fid"] == pytest.approx(frechet_distance(extract(a), extract(b)), rel=1e-6)
    assert out["toy_fid"] > 0 and "toy_kid" in out and "pixel_fid" in out
    assert set(sample_metrics(a, b, "image")) == {"pixel_fid", "pixel_kid"}  # opt-in only


@pytest.mark.parametrize("n1, n2, d", [(3, 4, 6), (5, 5, 40), (30, 20, 10)])
def test_the_sample_form_of_fid_equals_the_covariance_form(n1, n2, d):
    rng = np.random.default_rng(n1 + d)
    a, b = rng.normal(size=(n1, d)), rng.normal(size=(n2, d)) + 0.3
    assert frechet_distance_of_samples(a, b) == pytest.approx(frechet_distance(a, b), rel=1e-6)


def test_wrong_files_and_options_are_one_sentence(tmp_path):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(DifftkError, match="not the FID Inception weights"):
        load_feature_network("inception", tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(DifftkError, match="not a readable weights file"):
        load_feature_network("inception", tmp_path / "junk.pth")
    with pytest.raises(DifftkError, match='no feature network named "clip"'):
        load_feature_network("clip", tmp_path / "other.pth")
    res = CliRunner().invoke(app, ["eval", str(tmp_path), "--features", "inception"])
    assert res.exit_code == 1 and "--features and --weights go together" in res.output
    res = CliRunner().invoke(app, ["eval", str(tmp_path), "--features", "inception",
                                   "--weights", str(tmp_path / "missing.pth")])
    assert res.exit_code == 1 and "no such weights file" in res.output
