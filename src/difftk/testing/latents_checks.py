"""Contract checks of the latents family: a codec that builds on small images, encodes
deterministically to finite latents, decodes to the pixels' shape, and (when it says it is
lossless) gives the pixels back."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from difftk.data.dataset import DataBundle


def _example_images() -> DataBundle:
    from difftk.data.dataset import DataBundle

    gen = torch.Generator().manual_seed(0)
    train = torch.rand((48, 1, 8, 8), generator=gen) * 2 - 1
    return DataBundle(train=train, heldout=train[:8].clone(), source="contract images")


def check_latents_round_trip(latents) -> None:
    """build() on 8x8 images gives a codec whose encode is deterministic and finite, keeps
    the batch, and whose decode returns the pixels' shape; a lossless codec (or the identity)
    returns the pixels to 1e-4. Weights that are not on this machine are one DataError."""
    from difftk.errors import DataError

    bundle = _example_images()
    loads = []
    try:
        codec = latents.build(lambda: loads.append(1) or bundle)
    except DataError as exc:
        text = str(exc)
        assert text and "\n" not in text and "Traceback" not in text, f"unclear error: {text!r}"
        return
    x = bundle.heldout
    with torch.no_grad():
        z = codec.encode(x)
        again = codec.encode(x)
        back = codec.decode(z)
    assert z.shape[0] == x.shape[0], f"encode changed the batch: {tuple(z.shape)}"
    assert torch.isfinite(z).all(), "non-finite latents"
    assert torch.equal(z, again), "encode is not deterministic (the data set is encoded once)"
    assert back.shape == x.shape, f"decode gives {tuple(back.shape)}, not {tuple(x.shape)}"
    if codec.lossless or codec.identity:
        err = float((back - x).abs().max())
        assert err < 1e-4, f"a lossless codec's round trip is off by {err:.3g}"


CHECKS = {"latents": [check_latents_round_trip]}
