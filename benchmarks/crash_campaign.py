"""Long crash-consistency campaign: SIGKILL a tiny toy2d run before every file-system step
of every checkpoint write (and halfway through every file write, and after every training
step), resume each with --resume-or-start, and count the runs whose final model, EMA and
optimizer are bit-identical to an uninterrupted run. Then damage the final checkpoint in
each way tests/test_checkpoint_integrity.py knows and count the damage detected.

    PYTHONPATH=src python benchmarks/crash_campaign.py [--out DIR]

tests/test_crash_consistency.py runs a sample of these kills in CI.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

from crash_harness import Zygote, final_tensors, identical  # noqa: E402
from test_crash_consistency import kill_and_resume, train_args  # noqa: E402


def kills(zygote, out: Path) -> tuple[int, int, list[str]]:
    count = out / "count"
    assert zygote.run(train_args(out, "ref"), out / "ref.log", count=str(count))["rc"] == 0
    expected, total = final_tensors(out / "ref"), int(count.read_text())
    points = [dict(kill_op=k) for k in range(1, total + 1)]
    points += [dict(kill_op=k, torn=True) for k in range(1, total + 1)]
    points += [dict(kill_step=s) for s in range(1, 12)]
    survived, failures = 0, []
    for i, kill in enumerate(points):
        name = f"k{i}"
        killed, rc = kill_and_resume(zygote, out, name, **kill)
        ok = rc == 0 and identical(final_tensors(out / name), expected)
        survived += ok
        if not ok:
            failures.append(f"{kill}: rc {rc}")
        shutil.rmtree(out / name, ignore_errors=True)
        print(f"\r{i + 1}/{len(points)} kills, {survived} survived", end="", flush=True)
    print()
    return survived, len(points), failures


def corruptions(out: Path) -> tuple[int, int, list[str]]:
    """Each damage of test_checkpoint_integrity applied to the newest checkpoint: detected
    when loading the run does not hand back that checkpoint."""
    from test_checkpoint_integrity import CORRUPTIONS

    from difftk.errors import CheckpointError
    from difftk.run.checkpoint import load_intact

    detected, missed = 0, []
    for case, damage in CORRUPTIONS.items():
        copy = out / "damaged"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(out / "ref", copy, symlinks=True)
        newest = copy / "checkpoints" / "00000012"
        damage(newest)
        try:
            ok = load_intact(copy, warn=lambda _: None).path.name != newest.name
        except CheckpointError:
            ok = True
        detected += ok
        if not ok:
            missed.append(case)
    return detected, len(CORRUPTIONS), missed


def state_bit_flips(out: Path, flips: int = 200) -> tuple[int, int]:
    """Single-bit flips at random positions of the newest checkpoint's state.json: detected
    when loading the run does not hand back that checkpoint (a flip JSON still parses, in a
    number or a name, must be caught by state.json's own checksum)."""
    import random

    from difftk.errors import CheckpointError
    from difftk.run.checkpoint import load_intact

    rng = random.Random(0)
    detected = 0
    for _ in range(flips):
        copy = out / "flipped"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(out / "ref", copy, symlinks=True)
        state = copy / "checkpoints" / "00000012" / "state.json"
        data = bytearray(state.read_bytes())
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        state.write_bytes(bytes(data))
        try:
            detected += load_intact(copy, warn=lambda _: None).path.name != "00000012"
        except CheckpointError:
            detected += 1
    return detected, flips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-kills", action="store_true",
                        help="only the damage of a finished run's checkpoint (minutes, not hours)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="difftk-crash-"))
    out.mkdir(parents=True, exist_ok=True)
    zygote = Zygote(ROOT / "src")
    survived = tried = 0
    failures: list[str] = []
    try:
        if args.no_kills:
            assert zygote.run(train_args(out, "ref"), out / "ref.log")["rc"] == 0
        else:
            survived, tried, failures = kills(zygote, out)
    finally:
        zygote.close()
    detected, damaged, missed = corruptions(out)
    flipped, flips = state_bit_flips(out)
    print(f"kills survived: {survived} / {tried}")
    print(f"corruptions detected: {detected} / {damaged}")
    print(f"state.json single-bit flips detected: {flipped} / {flips}")
    for line in failures + [f"undetected: {m}" for m in missed]:
        print("  " + line)


if __name__ == "__main__":
    main()
