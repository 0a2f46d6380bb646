"""Why seed 004's eps-prediction run samples black and white tiles: the network does not see
the image mean of its input.

    python benchmarks/seed004_mean_blindness.py RUN [RUN ...] [--items 256] [--times 200 150 100 20]
        [--shifts 0.036 0.1 0.5] [--json OUT.json]

For each trained eps-prediction run (a discrete-time schedule; `difftk train` writes RUN),
on its first ``--items`` held-out images:

- the eps error and its *image mean* at each time t: the rms over images of mean(eps_hat -
  eps). The noise's own image mean has rms 1 / sqrt(pixels) (1/28 = 0.036 at 28x28), and it is
  readable from x_t (mean(x_t) = alpha mean(x0) + sigma mean(eps), alpha_T = 0.0056 on the
  seed's schedule), so an error of that size means the network ignores it;
- the response to a uniform shift: x_t + c should move the image mean of eps_hat by c / sigma_t
  at the noisiest step; the printed share is what the network does of it.

Ancestral sampling divides the eps error by alpha_t / sigma_t (1/178 at t = T on the seed's
schedule: x0_hat = (x_t - sigma eps_hat) / alpha), so an unread image mean becomes a uniform
offset of several units in the first x0 estimates, which the chain does not undo without
clipping (docs/reproductions.md, seed 004 Coding II).
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from difftk.analysis.trained_run import load_trained_run
from difftk.errors import DifftkError


def image_mean(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).mean(dim=1)


@torch.no_grad()
def probe(path: str, items: int, times: list[float], shifts: list[float], seed: int = 1) -> dict:
    run = load_trained_run(path, device="cpu", use_ema=False, max_samples=items)
    denoiser, schedule = run.denoiser.eval(), run.schedule
    if not schedule.has_table or denoiser.target.name != "eps":
        raise DifftkError(f"{path}: the probe reads eps predictions on a discrete-time schedule "
                          f"(this run: target {denoiser.target.name}, schedule {schedule.name})")
    x0 = run.heldout
    n = x0.shape[0]
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for t in times:
        levels = schedule.levels_at_time(torch.full((n,), float(t), dtype=torch.float64))
        eps = torch.randn(x0.shape, generator=generator)
        alpha = levels.alpha.float().view(-1, *[1] * (x0.dim() - 1))
        sigma = levels.sigma.float().view(-1, *[1] * (x0.dim() - 1))
        err = denoiser(alpha * x0 + sigma * eps, levels).pred - eps
        rows.append({"t": t, "alpha": float(alpha.flatten()[0]), "sigma": float(sigma.flatten()[0]),
                     "eps_mse": float(err.pow(2).mean()),
                     "image_mean_error_rms": float(image_mean(err).pow(2).mean().sqrt()),
                     "noise_image_mean_rms": float(image_mean(eps).pow(2).mean().sqrt())})
    t_max = float(schedule.num_steps)
    levels = schedule.levels_at_time(torch.full((n,), t_max, dtype=torch.float64))
    alpha, sigma = float(levels.alpha[0]), float(levels.sigma[0])
    x_t = alpha * x0 + sigma * torch.randn(x0.shape, generator=generator)
    base = image_mean(denoiser(x_t, levels).pred)
    response = [{"shift": c, "share_of_ideal": float((image_mean(denoiser(x_t + c, levels).pred)
                                                      - base).mean()) / (c / sigma)}
                for c in shifts]
    return {"run": path, "step": run.step, "items": n, "by_time": rows,
            "shift_response_at_T": response}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories or checkpoints")
    parser.add_argument("--items", type=int, default=256, help="held-out images")
    parser.add_argument("--times", type=float, nargs="+", default=[200, 150, 100, 20],
                        help="times t of the eps error table")
    parser.add_argument("--shifts", type=float, nargs="+", default=[0.036, 0.1, 0.5],
                        help="uniform input shifts c at t = T")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    results = []
    for path in args.runs:
        r = probe(path, args.items, args.times, args.shifts)
        results.append(r)
        print(f"{path} (step {r['step']}, {r['items']} held-out images)")
        for row in r["by_time"]:
            print(f"  t={row['t']:g}: eps mse {row['eps_mse']:.2e}, image mean of the error rms "
                  f"{row['image_mean_error_rms']:.4f} (the noise's own: "
                  f"{row['noise_image_mean_rms']:.4f}), x0 offset sigma/alpha x that = "
                  f"{row['image_mean_error_rms'] * row['sigma'] / row['alpha']:.3g}")
        for row in r["shift_response_at_T"]:
            print(f"  x_t + {row['shift']:g} at t=T moves mean(eps_hat) by "
                  f"{100 * row['share_of_ideal']:.1f}% of c / sigma")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    except DifftkError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
