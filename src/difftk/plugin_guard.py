"""The boundary between difftk and a plugin's code: failures there name the plugin.

A plugin's component is called from deep inside difftk (the loss, a figure, the sampler);
when its code raises, or returns what its family's contract forbids (None where a tensor
is due, a tensor of the wrong shape), the user must learn which plugin to blame, not read
a traceback through difftk's own code. ``guard_plugin_class`` wraps each method a plugin
class defines so that such a failure becomes a ``PluginError`` naming the distribution
(or plugin file), the component and the method.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from difftk.errors import ComponentError, DifftkError, PluginError

# Marks a method already wrapped, so a class registered by two registries is wrapped once.
GUARDED = "__difftk_plugin_boundary__"

# Shapes a family's methods must return, as a function of the call's arguments (after self).
# Weightings are the ones whose output difftk reshapes and plots (diffusion/weighting.py).
RESULT_SHAPES: dict[tuple[str, str], Callable[[tuple], tuple[int, ...] | None]] = {
    ("weights", "__call__"): lambda args: _shape(args[0]),
    ("weights", "at"): lambda args: _shape(getattr(args[0], "snr", None)),
    ("weights", "on_target"): lambda args: _shape(getattr(args[0], "snr", None)),
}


def describe(exc: BaseException) -> str:
    """An exception as "TypeName: first line of its message"."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _shape(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else None


def _who(provider, family: str, name: str) -> str:
    from difftk.families import BY_NAME

    return f'plugin {provider.package} {provider.version} ({BY_NAME[family].noun} "{name}")'


@contextmanager
def component_boundary(entry, doing: str) -> Iterator[None]:
    """Run a call into a component; a crash in it becomes one sentence naming its provider.

    Errors difftk raises on purpose (DifftkError, pydantic's ValidationError) pass through.
    """
    from pydantic import ValidationError

    try:
        yield
    except (DifftkError, ValidationError, KeyboardInterrupt):
        raise
    except (Exception, SystemExit) as exc:
        if entry.provider.builtin:
            raise ComponentError(f'{entry.name} failed while {doing} '
                                 f"({describe(exc)})") from exc
        raise PluginError(f"{_who(entry.provider, entry.family, entry.name)} failed while "
                          f"{doing}: {describe(exc)}") from exc


def _returns_tensor(base: type, method: str) -> bool:
    """Whether the family's base class declares ``method`` to return a Tensor."""
    fn = getattr(base, method, None)
    annotation = getattr(fn, "__annotations__", {}).get("return")
    return annotation in ("Tensor", "torch.Tensor") or getattr(annotation, "__name__", "") \
        == "Tensor"


def _guarded(fn: Callable, method: str, family: str, provider, base: type) -> Callable:
    wants_tensor = _returns_tensor(base, method)
    expected_shape = RESULT_SHAPES.get((family, method))

    @functools.wraps(fn)
    def call(self, *args, **kwargs):
        who = _who(provider, family, getattr(self, "name", type(self).__name__))
        try:
            result = fn(self, *args, **kwargs)
        except (DifftkError, KeyboardInterrupt):
            raise  # a sentence already (a plugin data set's missing file, say)
        except (Exception, SystemExit) as exc:
            raise PluginError(f"{who} failed in {method}(): {describe(exc)}") from exc
        if wants_tensor:
            import torch

            if not isinstance(result, torch.Tensor):
                raise PluginError(f"{who}: {method}() returned {type(result).__name__}, "
                                  "not a torch.Tensor")
            want = expected_shape(args) if expected_shape and args else None
            if want is not None and tuple(result.shape) != want:
                raise PluginError(f"{who}: {method}() returned a tensor of shape "
                                  f"{list(result.shape)}, not {list(want)} (one value per "
                                  "input element)")
        return result

    setattr(call, GUARDED, True)
    return call


def guard_plugin_class(cls: type, family: str, provider) -> None:
    """Wrap every public method (and __call__) that the plugin's own classes define."""
    from difftk.families import BY_NAME

    base = BY_NAME[family].base_class()
    for klass in inspect.getmro(cls):
        if klass.__module__.split(".")[0] in ("difftk", "pydantic", "builtins"):
            continue  # difftk's own code is not the plugin's
        for method, fn in list(vars(klass).items()):
            if not inspect.isfunction(fn) or getattr(fn, GUARDED, False):
                continue
            if method.startswith("_") and method != "__call__":
                continue
            if method.startswith("model_"):
                continue
            type.__setattr__(klass, method, _guarded(fn, method, family, provider, base))


class PluginExit(BaseException):
    """Raised in place of ``os._exit`` called by plugin code while it is imported."""


IMPORT_WARN_SECONDS = 5.0


@contextmanager
def plugin_import_boundary(who: str) -> Iterator[None]:
    """Run a plugin's import (or registration) so that nothing it does escapes: its prints go
    to stderr (stdout carries the command's output, ``--json`` included), ``os._exit`` raises
    PluginExit instead of ending difftk in silence, every exception it raises (BaseException
    too: GeneratorExit, a KeyboardInterrupt of its own) reaches the caller as an Exception to
    isolate, and an import still running after a few seconds is named on stderr. The user's
    own Ctrl-C, delivered as SIGINT while the import runs, still stops difftk."""
    import os
    import signal
    import sys
    import threading
    from contextlib import redirect_stdout

    user_interrupt: list[int] = []
    previous = None
    if threading.current_thread() is threading.main_thread():
        def on_sigint(signum, frame):
            user_interrupt.append(signum)
            raise KeyboardInterrupt
        previous = signal.signal(signal.SIGINT, on_sigint)
    real_exit = os._exit

    def refuse_exit(code=0):
        raise PluginExit(f"called os._exit({code}) while being imported")

    timer = threading.Timer(IMPORT_WARN_SECONDS, lambda: print(
        f"difftk: still importing {who} after {IMPORT_WARN_SECONDS:.0f} s (set "
        "DIFFTK_LOAD_PLUGINS to load only the plugins you name)", file=sys.stderr, flush=True))
    timer.daemon = True
    os._exit = refuse_exit
    timer.start()
    try:
        with redirect_stdout(sys.stderr):
            yield
    except KeyboardInterrupt:
        if user_interrupt:
            raise
        raise PluginError(f"{who} raised KeyboardInterrupt while being imported") from None
    except (Exception, SystemExit):
        raise
    except BaseException as exc:  # GeneratorExit, PluginExit, anything else of its own
        raise PluginError(f"{who}: {describe(exc)}") from None
    finally:
        timer.cancel()
        os._exit = real_exit
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
