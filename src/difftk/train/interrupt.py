"""SIGINT, SIGTERM and SIGHUP during training: finish the step, save, say how to resume.

SLURM and Kubernetes send SIGTERM some time before they kill a job; Ctrl-C sends SIGINT; a
terminal or ssh session that closes under a run started without nohup sends SIGHUP.
The first signal only sets a flag: the training loop calls ``stop_if_interrupted`` after
each step (after that step's logging and checkpoint), which raises TrainingInterrupted;
the session (train/session.py) then saves a checkpoint and exits non-zero with the
command that continues the run. A second signal exits at once, without saving: every
checkpoint write is atomic, so nothing half-written is left under a checkpoint's name.

Outside training proper (``difftk train`` starting up, or shutting down after its last
checkpoint) ``phase_handlers`` answers the same signals with one sentence naming the phase
and exit status 128 + the signal: there is no step to finish and nothing unsaved.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from difftk.errors import DifftkError

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_received: list[int] = []  # signals are per process, so is this flag


class TrainingInterrupted(DifftkError):
    """Training stopped on SIGINT, SIGTERM or SIGHUP; exit status 128 + the signal, as shells do."""

    def __init__(self, signum: int, message: str | None = None):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(message or f"interrupted by {signal.Signals(signum).name}")


def stop_if_interrupted(runtime=None) -> None:
    """Raise TrainingInterrupted once a signal came. With a runtime, every process agrees
    (one all-reduce of a flag per step under torchrun), so all stop after the same step
    and the checkpoint they save together is one state."""
    stop = bool(_received)
    if runtime is not None:
        stop = runtime.any_true(stop)
    if stop:
        raise TrainingInterrupted(_received[0] if _received else signal.SIGTERM)


def _on_signal(signum: int, frame) -> None:
    name = signal.Signals(signum).name
    if _received:  # the second one: leave now
        os.write(2, f"difftk: second {name}: exiting at once without saving\n".encode())
        os._exit(128 + signum)
    _received.append(signum)
    # os.write, not print: a handler may run while the progress bar is writing to stderr
    os.write(2, f"\ndifftk: {name} received: finishing this step and saving a checkpoint "
                f"(send it again to exit at once)\n".encode())


@contextmanager
def graceful_interrupts() -> Iterator[None]:
    """Handle SIGINT and SIGTERM as above while the block runs (main thread only; elsewhere
    signals keep their handlers), then put the previous handlers back."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _on_signal) for s in SIGNALS}
    try:
        yield
    finally:
        _phase[0] = "after the run finished (its checkpoints are written)"
        for s, handler in previous.items():
            signal.signal(s, handler)
        _received.clear()


_phase = ["while starting (before the first step; nothing to save)"]


def _on_signal_outside(signum: int, frame) -> None:
    os.write(2, f"\ndifftk: {signal.Signals(signum).name} received {_phase[0]}; "
                "exiting\n".encode())
    os._exit(128 + signum)


def phase_handlers() -> None:
    """For the life of a ``difftk train`` process (main thread): a signal before or after
    ``graceful_interrupts`` ends it with a sentence and 128 + the signal."""
    if threading.current_thread() is threading.main_thread():
        _phase[0] = "while starting (before the first step; nothing to save)"
        for s in SIGNALS:
            signal.signal(s, _on_signal_outside)
