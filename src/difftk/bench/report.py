"""``difftk bench``'s figures as text: one row per subject, the ratios, the step split."""

from __future__ import annotations

from difftk.bench.step_split import SEGMENTS
from difftk.nn.cost import human


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f} MiB"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def report_lines(result: dict) -> list[str]:
    lines = [f"{result['model']} on {result['device_name']} ({result['device']}), "
             f"precision {result['precision']}, batch {result['batch']}, shape "
             f"{'x'.join(map(str, result['shape']))}, {result['steps']} steps after "
             f"{result['warmup']} warm-up, interleaved"]
    lines.append(f"{'':10s}{'images/s':>10s}{'step ms':>10s}{'params':>10s}{'GFLOP/img':>11s}"
                 f"{'MFU':>8s}{'peak mem':>11s}")
    for name, f in result["subjects"].items():
        lines.append(f"{name:10s}{f['images_per_s']:10.1f}{1e3 * f['median_step_s']:10.2f}"
                     f"{human(f['parameters']):>10s}{f['training_flops_per_image'] / 1e9:11.3f}"
                     f"{_pct(f['mfu']):>8s}{_mib(f['peak_memory_bytes']):>11s}")
    if result.get("compiled"):
        lines.append("first step (torch.compile's compile time included): " + ", ".join(
            f"{name} {f['first_step_s']:.1f} s" for name, f in result["subjects"].items()
            if f.get("first_step_s") is not None))
    for name, r in result["ratios"].items():
        lines.append(f"difftk vs {name}: {r['images_per_s_ratio']:.3f}x images/s; step overhead "
                     f"{100 * r['step_overhead']:+.1f}% (medians), "
                     f"{100 * r['paired_step_overhead']:+.1f}% (median of paired steps)")
    for name, why in result["notes"].items():
        lines.append(f"{name}: {why}")
    if result["peak_tflops"] is None:
        lines.append("MFU: this device's peak is not in the table; give --peak-tflops")
    split = result.get("split")
    if split:
        total = sum(split.values())
        lines.append("difftk step split (probed steps, synchronised between segments):")
        lines.append("  " + "  ".join(f"{k} {1e3 * split[k]:.2f} ms ({100 * split[k] / total:.0f}%)"
                                      for k in SEGMENTS))
    s = result.get("sampling")
    if s:
        lines.append(f"sampling ({s['sampler']}, {s['nfe']} evaluations, batch {s['batch']}): "
                     f"{1e3 * s['seconds_per_evaluation']:.2f} ms per evaluation vs "
                     f"{1e3 * s['bare_forward_seconds']:.2f} ms bare forward "
                     f"({100 * s['overhead']:+.1f}%)")
    return lines
