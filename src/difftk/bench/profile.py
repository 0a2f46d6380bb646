"""Where the time of a few training steps goes, operator by operator (torch.profiler).

The summary is torch.profiler's table of operators sorted by their own device time (CUDA)
or host time (CPU), the first thing the fast-DiT and torchtitan write-ups look at: which
kernels dominate, how much is elementwise work, copies and casts rather than matrix
products.
"""

from __future__ import annotations

from torch.profiler import ProfilerActivity, profile

from difftk.bench.clock import synchronize


def profile_summary(loop, steps: int, rows: int = 30) -> str:
    activities = [ProfilerActivity.CPU]
    cuda = loop.device.type == "cuda"
    if cuda:
        activities.append(ProfilerActivity.CUDA)
    synchronize(loop.device)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            loop.step()
        synchronize(loop.device)
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)
