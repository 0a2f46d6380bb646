"""Train on a packed set larger than this machine's memory; report each process's peak
anonymous resident memory (RssAnon: pages of the shards are the page cache's, not ours).

    python benchmarks/large_pack_memory.py --gb 30 --dir /scratch [--steps 200] [--nproc 1,2]
        [--json benchmarks/results/large_pack_memory.json] [--keep] [--pack DIR]

Writes ``--gb`` GB of 64x64 RGB uint8 images (random bytes made per shard, never whole) with
``difftk data pack``'s writer, then runs ``difftk train`` on it (recipes/edm.toml's U-Net on
64x64 images, the lazy loader pipeline with 2 workers) for ``--steps`` steps, once per entry
of ``--nproc`` (1: a plain process; 2: torchrun --standalone with 2 ranks), sampling
/proc/PID/status of every training process (not its DataLoader workers, which are separate
processes) and of the workers every 0.5 s. Goal (docs/data.md): under 3 GB per process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from difftk.data.items import Items
from difftk.data.pack import finish, pack_split
from difftk.data.packed import Manifest

ROOT = Path(__file__).resolve().parent.parent
SIDE = 64


class RandomBytes(Items):
    """Items made from their index at read time: a source that never exists whole."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    @property
    def item_shape(self):
        return (3, SIDE, SIDE)

    @property
    def stored_dtype(self):
        return torch.uint8

    def read(self, indices):
        rng = np.random.default_rng(int(indices[0]))
        data = rng.bytes(len(indices) * 3 * SIDE * SIDE)
        return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(len(indices), 3, SIDE, SIDE)


def status(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmRSS"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def train_and_watch(pack: Path, out: Path, steps: int, nproc: int) -> dict:
    sets = [f'run.out_dir="{out}"', f'run.name="n{nproc}"', f"train.steps={steps}",
            "train.batch_size=32", 'data.name="packed"', f'data.path="{pack}"',
            'data.pipeline="loader"', "data.workers=2", "data.heldout=256", "log.every=50",
            "log.val_every=0", "log.sample_every=0", "log.checkpoint_every=0",
            "log.num_samples=4", "sampler.steps=2", "model.channels=16",
            "model.attention_resolutions=[]", "model.mid_attention=false"]
    args = [a for s in sets for a in ("--set", s)]
    train = ["train", str(ROOT / "recipes/edm.toml"), "--no-progress", *args]
    if nproc == 1:
        command = [sys.executable, "-m", "difftk", *train]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={nproc}", "-m", "difftk", *train]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks: dict[str, dict[str, int]] = {}
    done = threading.Event()

    def watch():
        while not done.is_set():
            top = children(proc.pid) if nproc > 1 else [proc.pid]
            for rank, pid in enumerate(sorted(top)):
                for role, p in [(f"process {rank}", pid)] + [
                        (f"process {rank} worker", c) for c in children(pid)]:
                    s = status(p)
                    peak = peaks.setdefault(role, {})
                    for k, v in s.items():
                        peak[k] = max(peak.get(k, 0), v)
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    log, _ = proc.communicate()
    done.set()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"training failed ({proc.returncode}):\n{log[-3000:]}")
    return {"nproc": nproc, "steps": steps, "seconds": round(time.perf_counter() - start, 1),
            "peak_kB": peaks, "last_lines": log.strip().splitlines()[-3:]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gb", type=float, default=30.0)
    p.add_argument("--dir", default=None)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--nproc", default="1,2")
    p.add_argument("--json", default=None)
    p.add_argument("--keep", action="store_true", help="keep the pack (default: remove it)")
    p.add_argument("--pack", default=None, help="train on this pack instead of writing one")
    args = p.parse_args()
    item = 3 * SIDE * SIDE
    n = int(args.gb * 1e9 // item)
    tmp = tempfile.mkdtemp(dir=args.dir)
    pack = Path(args.pack) if args.pack else Path(tmp) / "pack"
    start = time.perf_counter()
    if args.pack:
        from difftk.data.packed import read_manifest

        record = read_manifest(pack).splits["train"]
        n = record.count
    else:
        record = pack_split(RandomBytes(n), None, pack, "train", 16384, workers=2)
        finish(pack, Manifest(item_shape=[3, SIDE, SIDE], dtype="uint8", white=255,
                              splits={"train": record}))
    written = sum((pack / s.file).stat().st_size for s in record.shards)
    report = {"items": n, "bytes": written, "pack_seconds": round(time.perf_counter() - start, 1),
              "memory_total_kB": int(Path("/proc/meminfo").read_text().split()[1]), "runs": []}
    print(f"packed {n:,} items, {written / 1e9:.1f} GB in {report['pack_seconds']} s")
    for nproc in (int(x) for x in args.nproc.split(",")):
        run = train_and_watch(pack, Path(tmp) / "runs", args.steps, nproc)
        report["runs"].append(run)
        for role, peak in sorted(run["peak_kB"].items()):
            print(f"{nproc} process(es), {role}: peak RssAnon {peak.get('RssAnon', 0) / 2**20:.2f} "
                  f"GB, RssFile {peak.get('RssFile', 0) / 2**20:.2f} GB")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        if args.pack is None:
            shutil.rmtree(pack, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
