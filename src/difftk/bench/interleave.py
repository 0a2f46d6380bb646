"""Steps of several subjects taken in turn (A, B, C, A, B, C, ...), each timed alone.

Machine drift (another process, a clock change, thermal throttling) then hits every
subject alike, and the medians of their per-step times compare like with like. The
warm-up steps (allocator growth, kernel selection, torch.compile) are taken the same way
and thrown away.
"""

from __future__ import annotations

from difftk.bench.clock import timed


def interleaved_step_times(subjects, steps: int, warmup: int,
                           first: dict[str, float] | None = None) -> dict[str, list[float]]:
    """Seconds of each measured step of each subject, by subject name; ``first`` (if given)
    receives each subject's very first step, which holds torch.compile's compile time."""
    times: dict[str, list[float]] = {s.name: [] for s in subjects}
    for i in range(warmup + steps):
        for subject in subjects:
            seconds = timed(subject.device, subject.step)
            if i == 0 and first is not None:
                first[subject.name] = seconds
            if i >= warmup:
                times[subject.name].append(seconds)
    return times
