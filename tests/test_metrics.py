"""Sample metrics against closed forms and a direct scipy computation."""

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from difftk.eval.distances import energy_distance, sliced_wasserstein
from difftk.eval.metrics import (
    frechet_distance,
    frechet_distance_from_stats,
    kernel_distance,
    pixel_fid,
    sample_metrics,
    split_halves,
    to_unit_range,
)


def _scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula |mu1 - mu2|^2 + tr(C1 + C2 - 2 sqrtm(C1 C2))."""
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # the digits' always-blank border pixels: singular C
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(c1 @ c2).real
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + np.trace(c1 + c2 - 2 * covmean))


def test_frechet_distance_of_gaussians_with_diagonal_covariances_is_closed_form():
    """For commuting (diagonal) covariances: |dmu|^2 + sum (sqrt c1 - sqrt c2)^2."""
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 0.0])
    c1, c2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = 0.25 + 4.0 + (1 - 3) ** 2 + (2 - 1) ** 2 + 0.0
    got = frechet_distance_from_stats(mu1, np.diag(c1), mu2, np.diag(c2))
    assert got == pytest.approx(expected, rel=1e-12)


def test_pixel_fid_agrees_with_scipy_sqrtm_and_separates_data_from_noise():
    """Seed 004 Coding I.9's eigendecomposition form equals the sqrtm form to 1e-6, and the
    digits' two disjoint halves are far closer than the digits and uniform noise."""
    from difftk.plugins.datasets.digits import Digits

    data = Digits().load().train
    half_a, half_b = split_halves(data)
    noise = torch.rand_like(half_b) * 2 - 1
    ours = pixel_fid(half_a, half_b)
    direct = _scipy_fid(to_unit_range(half_a), to_unit_range(half_b))
    assert ours == pytest.approx(direct, rel=1e-6)
    against_noise = pixel_fid(half_a, noise)
    assert against_noise == pytest.approx(_scipy_fid(to_unit_range(half_a),
                                                     to_unit_range(noise)), rel=1e-6)
    assert ours < against_noise / 20


def test_frechet_distance_is_symmetric_and_zero_on_identical_samples():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 5)), rng.normal(1.0, 2.0, size=(300, 5))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)


def test_kernel_distance_converges_to_the_population_mmd_of_two_discrete_distributions():
    """P uniform on 6 points, Q uniform on 5 others: the population MMD^2 is a finite sum
    mean K(A, A) + mean K(B, B) - 2 mean K(A, B), diagonal included."""
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(6, 3)), rng.normal(0.5, 1.0, size=(5, 3))

    def k(p, q):
        return (p @ q.T / 3 + 1) ** 3

    population = k(A, A).mean() + k(B, B).mean() - 2 * k(A, B).mean()
    a = A[rng.integers(0, 6, 4000)]
    b = B[rng.integers(0, 5, 4000)]
    mean, std = kernel_distance(a, b, subsets=20, subset_size=500)
    assert mean == pytest.approx(population, rel=0.05)
    same, _ = kernel_distance(a, A[rng.integers(0, 6, 4000)], subsets=20, subset_size=500)
    assert abs(same) < 0.05 * population  # unbiased: no offset on equal distributions


def test_sample_metrics_for_vectors_include_energy_and_sliced_wasserstein():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g) + 1.0
    metrics = sample_metrics(a, b, "vector")
    assert set(metrics) == {"frechet_distance", "kernel_distance", "energy_distance",
                            "sliced_wasserstein"}
    assert metrics["energy_distance"] == pytest.approx(energy_distance(a, b))
    assert metrics["sliced_wasserstein"] == pytest.approx(sliced_wasserstein(a, b))
    # a unit shift in both coordinates: the Frechet distance is about |dmu|^2 = 2
    assert metrics["frechet_distance"] == pytest.approx(2.0, abs=0.3)


def test_energy_distance_of_two_point_masses_is_twice_their_distance():
    """2 E|X - Y| - E|X - X'| - E|Y - Y'| = 2 |a - b| for point masses (Szekely & Rizzo)."""
    a = torch.zeros(10, 2)
    b = torch.tensor([[3.0, 4.0]]).expand(10, 2)
    assert energy_distance(a, b) == pytest.approx(10.0)
