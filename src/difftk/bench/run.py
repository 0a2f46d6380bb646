"""``difftk bench``'s measurement: the subjects, their interleaved steps, the figures.

Every subject trains the same network at the same batch on the same data tensor (the
recipe's data in its [latents], as ``difftk train`` sees it, or random data of a shape): the
library's step (difftk_loop.py), and on request the raw loop (raw_loop.py) and diffusers
(diffusers_loop.py). Steps are interleaved (interleave.py); the library's step split is
measured after, on probed steps (step_split.py); peak memory on one more step of each
subject alone; FLOPs per image from ``difftk info``'s counter (nn/cost.py).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from difftk.bench.clock import median, synchronize
from difftk.bench.difftk_loop import DifftkLoop
from difftk.bench.diffusers_loop import DiffusersLoop, diffusers_layout
from difftk.bench.interleave import interleaved_step_times
from difftk.bench.peaks import device_name, peak_tflops
from difftk.bench.raw_loop import RawLoop
from difftk.bench.sampling import sampling_overhead
from difftk.bench.step_split import split_steps
from difftk.data.dataset import DataBundle
from difftk.data.items import is_lazy
from difftk.errors import DifftkError
from difftk.nn.auto_speed import chosen
from difftk.nn.cost import network_cost
from difftk.recipe import Recipe
from difftk.run.training_data import training_data

BASELINES = ("raw", "diffusers")


@dataclass
class BenchOptions:
    steps: int = 20
    warmup: int = 5
    batch: int | None = None  # None: the recipe's train.batch_size
    compare: tuple[str, ...] = ()
    peak_tflops: float | None = None
    shape: tuple[int, ...] | None = None  # random data of this shape instead of the recipe's
    classes: int = 0  # with shape: labels in 0..classes-1
    sampling: bool = False
    split_steps: int = 10
    profile_steps: int = 0  # >0: an operator table of this many steps (result["profile"])


def random_data(shape: tuple[int, ...], classes: int, n: int) -> DataBundle:
    """n uniform values in [-1, 1] of ``shape`` (the range of difftk's image data)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((n, *shape), generator=gen) * 2 - 1
    labels = torch.randint(0, classes, (n,), generator=gen) if classes else None
    kind = "image" if len(shape) == 3 else "vector"
    return DataBundle(train=x, heldout=x[:8], train_labels=labels,
                      heldout_labels=None if labels is None else labels[:8],
                      num_classes=classes, kind=kind, pipeline="memory", source="random data")


def check_compare(names: tuple[str, ...]) -> None:
    for name in names:
        if name not in BASELINES:
            raise DifftkError(f'--compare "{name}" is not one of {", ".join(BASELINES)}')


def measured_flops(net: torch.nn.Module, example: tuple) -> int:
    """Forward FLOPs of one sample through ``net`` (a baseline's own network)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(*example)
    return counter.get_total_flops()


def peak_memory(subject) -> int | None:
    """Bytes allocated at the peak of one step of ``subject`` alone (CUDA only)."""
    if subject.device.type != "cuda":
        return None
    synchronize(subject.device)
    torch.cuda.reset_peak_memory_stats(subject.device)
    subject.step()
    synchronize(subject.device)
    return torch.cuda.max_memory_allocated(subject.device)


def run_bench(recipe: Recipe, device: torch.device, options: BenchOptions) -> dict:
    check_compare(options.compare)
    batch = options.batch or recipe.train.batch_size
    if options.shape is not None:
        data = random_data(options.shape, options.classes, max(4 * batch, 256))
    else:  # the recipe's data in its [latents]: what `difftk train` trains on
        trained_on = training_data(recipe, device)
        recipe, data = trained_on.recipe, trained_on.data
    if batch > data.train.shape[0]:
        raise DifftkError(f"--batch {batch} is larger than the {data.train.shape[0]} training "
                          "items; give a smaller batch")
    loop = DifftkLoop(recipe, data, device, batch)
    subjects, notes = [loop], {}
    # The hand-written baselines draw from a tensor on the device: for a set read from
    # storage, its first items (a speed baseline needs no more than a few batches of them).
    baseline_x, baseline_y = data.train, data.train_labels
    if is_lazy(baseline_x):
        keep = min(len(baseline_x), max(8 * batch, 1024))
        baseline_x = baseline_x[:keep]
        baseline_y = baseline_y[:keep] if baseline_y is not None else None
    if "raw" in options.compare:
        subjects.append(RawLoop(loop, baseline_x, baseline_y))
    if "diffusers" in options.compare:
        config, why_not = diffusers_layout(loop)
        if config is None:
            notes["diffusers"] = why_not
        else:
            subjects.append(DiffusersLoop(loop, config, baseline_x, baseline_y))

    cost = network_cost(recipe.parts["model"], loop.spec)
    first: dict[str, float] = {}
    times = interleaved_step_times(subjects, options.steps, options.warmup, first)
    low = loop.low_precision
    peak = options.peak_tflops or peak_tflops(device, low)
    figures = {}
    for subject in subjects:
        step_s = median(times[subject.name])
        flops = cost.flops
        params = cost.parameters
        if subject.name == "diffusers":
            params = subject.parameters
            example = (loop.x_example(1), torch.ones(1, device=device, dtype=torch.long))
            flops = measured_flops(subject.net, example)
        images_per_s = batch / step_s
        figures[subject.name] = {
            "median_step_s": step_s, "images_per_s": images_per_s,
            "step_times_s": times[subject.name], "parameters": params,
            "first_step_s": first.get(subject.name),  # with train.compile: the compile time
            "forward_flops_per_image": flops, "training_flops_per_image": 3 * flops,
            "mfu": None if peak is None else 3 * flops * images_per_s / (peak * 1e12),
            "peak_memory_bytes": peak_memory(subject)}
    ratios = {}
    for name in figures:
        if name == "difftk":
            continue
        paired = [a / b for a, b in zip(times["difftk"], times[name], strict=True)]
        ratios[name] = {
            "images_per_s_ratio": figures["difftk"]["images_per_s"] / figures[name]["images_per_s"],
            "step_overhead": figures["difftk"]["median_step_s"] / figures[name]["median_step_s"] - 1,
            "paired_step_overhead": median(paired) - 1}
    out = {
        "recipe": recipe.run.name, "device": str(device), "device_name": device_name(device),
        "torch": torch.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "precision": recipe.parts["precision"].name, "low_precision": low,
        "compile": recipe.train.compile,
        "compiled": chosen(recipe.train.compile, "compile", device),
        "channels_last": chosen(getattr(recipe.parts["model"], "channels_last", False),
                                "channels_last", device),
        "optimizer": recipe.parts["optimizer"].model_dump(),
        "model": recipe.parts["model"].name, "shape": list(loop.spec.shape), "batch": batch,
        "steps": options.steps, "warmup": options.warmup, "peak_tflops": peak,
        "subjects": figures, "ratios": ratios, "notes": notes,
        "split": split_steps(loop, options.split_steps) if options.split_steps else None,
    }
    if options.profile_steps:
        from difftk.bench.profile import profile_summary

        out["profile"] = profile_summary(loop, options.profile_steps)
    if options.sampling:
        out["sampling"] = sampling_overhead(loop, batch, repeats=max(3, options.steps // 5))
    return out
