"""Gradient variance by noise level (seed 000 §3.3, seed 001 §5.2): the bucket statistics
against their definitions, on gradients given explicitly."""

import numpy as np
import torch

from difftk.analysis.gradient_variance import summarise_buckets


def test_bucket_statistics_match_their_definitions():
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(10, 6, generator=gen) + torch.linspace(0, 1, 6)  # per-sample gradients
    factors = {"a": torch.ones(10, dtype=torch.float64),
               "b": torch.linspace(0.5, 3.0, 10, dtype=torch.float64)}
    groups = torch.tensor_split(torch.arange(10), 2)
    log_snr = np.linspace(-3, 3, 10)
    rows = summarise_buckets(iter(g), factors, groups, log_snr, -log_snr)
    assert len(rows) == 4
    for target, c in factors.items():
        scaled = (c[:, None] * g.double()).numpy()
        total = np.mean([scaled[grp.numpy()].mean(0) for grp in groups], axis=0)
        mine = [r for r in rows if r["target"] == target]
        for r, grp in zip(mine, groups, strict=True):
            s = scaled[grp.numpy()]
            norms = np.linalg.norm(s, axis=1)
            assert np.isclose(r["grad_norm_mean"], norms.mean())
            assert np.isclose(r["grad_norm_std"], norms.std(ddof=1))
            # trace of the unbiased covariance of the per-sample gradients
            assert np.isclose(r["grad_variance"], np.trace(np.cov(s.T)))
            assert np.isclose(r["mean_grad_norm"], np.linalg.norm(s.mean(0)))
            assert np.isclose(r["share_projection"], 0.5 * s.mean(0) @ total / (total @ total))
            assert np.isclose(r["log_snr_mid"], np.median(log_snr[grp.numpy()]))
            assert np.isclose(r["t_mid"], -r["log_snr_mid"])
        assert np.isclose(sum(r["share_projection"] for r in mine), 1.0)
        assert np.isclose(sum(r["share_norm"] for r in mine), 1.0)
