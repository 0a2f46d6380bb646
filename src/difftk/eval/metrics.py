"""Sample-quality metrics computed on the data itself (no Inception network).

- Frechet distance between Gaussians fitted to two samples, computed as seed 004 Coding
  I.9 does: the matrix square root of the symmetric C1^{1/2} C2 C1^{1/2} by
  eigendecomposition, negative eigenvalues clipped. On images it runs on the pixels
  (mapped to [0, 1], the seed's MNIST range) and is reported as "pixel FID" so nobody
  mistakes it for the Inception FID of Heusel et al. 2017.
- Kernel distance (KID, Binkowski et al. 2018): the unbiased MMD^2 with the cubic
  polynomial kernel k(x, y) = (x . y / d + 1)^3, averaged over random subsets (clean-fid's
  protocol: 100 subsets of at most 1000 points).
- For vector data also the energy and sliced Wasserstein distances of eval/distances.py.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from difftk.data.items import in_memory
from difftk.diffusion.pixel_range import UNIT_RANGE, PixelRange
from difftk.eval.distances import energy_distance, sliced_wasserstein

ENERGY_POINTS = 2000


def _features(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric PSD matrix (eigenvalues clipped at 0)."""
    w, v = np.linalg.eigh((matrix + matrix.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance_from_stats(mu1: np.ndarray, c1: np.ndarray, mu2: np.ndarray,
                                c2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1^{1/2} C2 C1^{1/2})^{1/2}) (seed 004 Coding I.9).

    tr((C1^{1/2} C2 C1^{1/2})^{1/2}) = tr((C1 C2)^{1/2}), the usual FID formula, but the
    symmetric form needs no complex arithmetic.
    """
    diff = mu1 - mu2
    c1_sqrt = _psd_sqrt(c1)
    covmean = _psd_sqrt(c1_sqrt @ c2 @ c1_sqrt)
    return float(diff @ diff + np.trace(c1 + c2 - 2 * covmean))


def frechet_distance(a, b) -> float:
    """The Frechet distance between Gaussians fitted to two samples [N, ...] (flattened)."""
    fa, fb = _features(a), _features(b)
    return frechet_distance_from_stats(fa.mean(0), np.cov(fa, rowvar=False),
                                       fb.mean(0), np.cov(fb, rowvar=False))


def to_unit_range(images, pixel_range: PixelRange = UNIT_RANGE) -> np.ndarray:
    """Images in the data's space (black and white at ``pixel_range``, [-1, 1] by default)
    as flat [0, 1] pixel features."""
    x = torch.as_tensor(images).detach().cpu().double()
    return _features(pixel_range.to_unit(x))  # per-channel ranges need [N, C, ...] images


def pixel_fid(samples, reference, pixel_range: PixelRange = UNIT_RANGE) -> float:
    """Frechet distance on pixels in [0, 1] (seed 004 Coding I.9's "pixel-space FID")."""
    return frechet_distance(to_unit_range(samples, pixel_range),
                            to_unit_range(reference, pixel_range))


def _cubic_kernel(p: np.ndarray, q: np.ndarray, d: int) -> np.ndarray:
    k = p @ q.T / d + 1
    return k * k * k  # three times faster than k ** 3 (numpy's pow)


def kernel_distance(a, b, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0) -> tuple[float, float]:
    """KID: mean and std over subsets of the unbiased MMD^2 with k = (x.y / d + 1)^3."""
    fa, fb = _features(a), _features(b)
    d = fa.shape[1]
    m = min(len(fa), len(fb), subset_size)
    if m < 2:
        raise ValueError("the kernel distance needs at least 2 points in each sample")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = fa[rng.choice(len(fa), m, replace=False)]
        y = fb[rng.choice(len(fb), m, replace=False)]
        kxx, kyy, kxy = (_cubic_kernel(p, q, d) for p, q in ((x, x), (y, y), (x, y)))
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(within - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def sample_metrics(samples: Tensor, reference: Tensor, kind: str,
                   features: dict | None = None,
                   pixel_range: PixelRange = UNIT_RANGE) -> dict[str, float]:
    """Every metric that fits the data: pixel FID and KID for images; Frechet, kernel,
    energy and sliced Wasserstein distances for vectors (2-D toys). ``features`` (name ->
    extract(images, pixel_range) -> features, eval/features.py) adds FID and KID on learned
    features;
    ``pixel_range`` says where the images' black and white lie (the data's scaling).
    ``reference`` may be a split read from storage (``Items``): it is read once, in chunks."""
    reference = in_memory(reference)
    samples, reference = samples.detach().cpu().float(), reference.detach().cpu().float()
    if kind == "image":
        unit_samples = to_unit_range(samples, pixel_range)
        unit_reference = to_unit_range(reference, pixel_range)
        out = {"pixel_fid": frechet_distance(unit_samples, unit_reference),
               "pixel_kid": kernel_distance(unit_samples, unit_reference)[0]}
        for name, extract in (features or {}).items():
            from difftk.eval.frechet_samples import frechet_distance_of_samples

            fa, fb = extract(samples, pixel_range), extract(reference, pixel_range)
            out[f"{name}_fid"] = frechet_distance_of_samples(fa, fb)
            out[f"{name}_kid"] = kernel_distance(fa, fb)[0]
        return out
    return {"frechet_distance": frechet_distance(samples, reference),
            "kernel_distance": kernel_distance(samples, reference)[0],
            # pairwise distances: at most ENERGY_POINTS of each sample keeps memory small
            "energy_distance": energy_distance(samples[:ENERGY_POINTS], reference[:ENERGY_POINTS]),
            "sliced_wasserstein": sliced_wasserstein(samples, reference)}


def split_halves(x: Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Two disjoint random halves of a sample (a data set's own noise floor for a metric)."""
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    half = x.shape[0] // 2
    return x[perm[:half]], x[perm[half:2 * half]]
