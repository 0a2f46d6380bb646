"""Where one training step's time goes: data wait, forward, backward, optimizer, EMA, logging.

Probes are attached to the step's parts for the probed steps only, and each synchronises
the device before it reads the clock, so every segment is the device work between two
marks (the library's step itself never synchronises for timing):

- data wait: taking the next batch;
- forward: from the start of the step to the end of the network's forward pass (the noise
  draws, the target's scalings and the network);
- backward: from there to the start of gradient clipping (the loss, its reduction and the
  backward pass);
- optimizer: clipping, the NaN guard's verdict and the optimizer step;
- EMA: the EMA update;
- logging: the metric window (added to every step, flushed every ``log.every`` steps);
- other: the rest of the step (zeroing gradients, result bookkeeping).

Synchronising between segments removes the overlap of host and device work, so the sum of
the segments is a little above an unprobed step's time; images/s come from unprobed steps.
"""

from __future__ import annotations

from difftk.bench.clock import median, now

SEGMENTS = ("data_wait", "forward", "backward", "optimizer", "ema", "logging", "other")


class _Delegate:
    """A stand-in for one part of the step that marks the time around one of its methods."""

    def __init__(self, part, method: str, before: str, after: str, marks: dict, device):
        self._part, self._method, self._marks, self._device = part, method, marks, device
        self._before, self._after = before, after

    def __getattr__(self, attr):
        if attr != self._method:
            return getattr(self._part, attr)

        def marked(*args, **kwargs):
            self._marks.setdefault(self._before, now(self._device))
            out = getattr(self._part, attr)(*args, **kwargs)
            self._marks[self._after] = now(self._device)
            return out

        return marked


def split_steps(loop, steps: int) -> dict[str, float]:
    """Median seconds of each segment over ``steps`` probed steps of a ``DifftkLoop``."""
    dev = loop.device
    step_fn = loop.step_fn
    marks: dict[str, float] = {}
    saved = step_fn.clipping, step_fn.ema, step_fn.optimizer

    def forward_end(_module, _args, _output):
        marks.setdefault("forward_end", now(dev))  # the first micro-batch's forward

    def optimizer_end(_optimizer, _args, _kwargs):
        marks["optimizer_end"] = now(dev)

    hook = loop.model.net.register_forward_hook(forward_end)
    opt_hook = loop.optimizer.register_step_post_hook(optimizer_end)
    clip = "clip" if step_fn._plain_clip else "clip_model"  # what the step calls (step.py)
    step_fn.clipping = _Delegate(saved[0], clip, "clip_start", "clip_end", marks, dev)
    step_fn.ema = _Delegate(saved[1], "update", "ema_start", "ema_end", marks, dev)
    rows: dict[str, list[float]] = {name: [] for name in SEGMENTS}
    try:
        for _ in range(steps):
            marks.clear()
            t0 = now(dev)
            x0, labels = loop.next_batch()
            t1 = now(dev)
            result = loop.train_step(x0, labels)
            t2 = now(dev)
            loop.log(result)
            t3 = now(dev)
            fwd = marks.get("forward_end", t1)
            clip = marks.get("clip_start", fwd)
            opt = marks.get("optimizer_end", marks.get("clip_end", clip))
            ema = marks.get("ema_end", opt) - marks.get("ema_start", opt)
            parts = {"data_wait": t1 - t0, "forward": fwd - t1, "backward": clip - fwd,
                     "optimizer": opt - clip, "ema": ema, "logging": t3 - t2}
            parts["other"] = max(0.0, (t2 - t1) - sum(parts[k] for k in
                                                      ("forward", "backward", "optimizer", "ema")))
            for key, value in parts.items():
                rows[key].append(value)
    finally:
        hook.remove()
        opt_hook.remove()
        step_fn.clipping, step_fn.ema, step_fn.optimizer = saved
    return {key: median(values) for key, values in rows.items()}
