"""difftk data: inspect a recipe's data set (sizes, range, sigma_data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import DifftkTyper, SetOption, fail

data_app = DifftkTyper(no_args_is_help=True, help="Inspect the data set a recipe trains on.")


def stats(
    recipe: Annotated[Path, typer.Argument(help="TOML recipe whose [data] section is loaded.")],
    set_: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
):
    """Load the recipe's data set and print its sizes, range, mean and std (sigma_data).

    A recipe with [latents] also gets the statistics of its encoded data set, the one it
    trains on and measures sigma_data on."""
    import torch

    from difftk.recipe import load_recipe
    from difftk.run.training_data import training_data

    r = load_recipe(recipe, set_)
    part = r.parts["data"]
    bundle = part.load()
    s = bundle.stats
    trained_on = training_data(r, torch.device("cpu"), bundle)
    latents = None if trained_on.codec.identity else trained_on.data
    report = {
        "data": part.name, "kind": bundle.kind, "shape": list(bundle.shape),
        "train": int(bundle.train.shape[0]), "heldout": int(bundle.heldout.shape[0]),
        "classes": bundle.num_classes, "class_names": bundle.class_names,
        "min": s.minimum, "max": s.maximum, "mean": s.mean, "sigma_data": s.std,
        "channel_mean": list(s.channel_mean), "channel_std": list(s.channel_std),
        "hflip": bundle.hflip, "stats_subset": s.subset, "sigma_data_std_error": s.std_error,
    }
    if latents is not None:
        ls = latents.stats
        report["latents"] = {"name": r.parts["latents"].name, "shape": list(latents.shape),
                             "min": ls.minimum, "max": ls.maximum, "mean": ls.mean,
                             "sigma_data": ls.std}
    if as_json:
        typer.echo(json.dumps(report, indent=1))
        return
    fmt = ", ".join
    typer.echo(f"data        {part.name} ({bundle.kind}, one item {list(bundle.shape)})")
    typer.echo(f"items       {report['train']} training, {report['heldout']} held out")
    if bundle.num_classes:
        names = f": {fmt(bundle.class_names)}" if bundle.class_names else ""
        typer.echo(f"classes     {bundle.num_classes}{names}")
    typer.echo(f"range       [{s.minimum:.4g}, {s.maximum:.4g}]")
    typer.echo(f"mean        {s.mean:.5f}   per channel: {fmt(f'{v:.5f}' for v in s.channel_mean)}")
    typer.echo(f"std         {s.std:.5f}   per channel: {fmt(f'{v:.5f}' for v in s.channel_std)}")
    if latents is None:
        over = (f"a random {s.subset}-item subset's std, standard error {s.std_error:.2g}"
                if s.subset else "the training set's std over all values")
        typer.echo(f"sigma_data  {s.std:.5f}   ({over}; sigma_data = \"data\" uses it)")
        return
    ls = latents.stats
    typer.echo(f"latents     {r.parts['latents'].name}: one item {list(latents.shape)}, range "
               f"[{ls.minimum:.4g}, {ls.maximum:.4g}], mean {ls.mean:.5f}")
    typer.echo(f"sigma_data  {ls.std:.5f}   (the encoded training set's std over all values; "
               f'sigma_data = "data" uses it)')


def pack(
    source: Annotated[Path, typer.Argument(help=(
        "What to pack: a folder of images (sub-folders as classes), an EDM / EDM2 "
        "dataset_tool.py .zip, a Hugging Face save_to_disk folder or parquet files, a .npz, "
        "CIFAR-10's python batches, IDX files, or a recipe (.toml) whose [data] is packed."))],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the shards and "
                                      "manifest.json into (packing again into it resumes).")],
    resolution: Annotated[int | None, typer.Option(
        min=4, help="Fit every image to this square size (default: the images' own size, "
                    "which they must then share).")] = None,
    center_crop: Annotated[bool, typer.Option(
        help="With --resolution: scale the shorter side and crop the centre "
             "(the no- form of this option stretches instead).")] = True,
    channels: Annotated[int | None, typer.Option(
        min=1, max=3, help="3: RGB, 1: greyscale (image files; default 3).")] = None,
    kind: Annotated[str | None, typer.Option(
        "--as", help="The data set that reads SOURCE (folder, npz, hf_datasets, cifar10, idx, "
                     "...); default: recognised from the path.")] = None,
    shard_items: Annotated[int, typer.Option(
        min=1, help="Items per shard file (8192 64x64 RGB images: 100 MB).")] = 8192,
    workers: Annotated[int, typer.Option(
        min=1, help="Processes decoding and writing shards in parallel.")] = 2,
    on_error: Annotated[str, typer.Option(
        help="An unreadable image: stop (name it and exit) or skip (leave it out and count "
             "it in the manifest).")] = "stop",
    set_: SetOption = None,
):
    """Pack a data set into memory-mapped uint8 shards with a manifest (docs/data.md).

    Train on the result with data.name = "packed" and data.path = OUT. The manifest records
    the resolution and crop rule, counts, labels, class names, every shard's sha256 and the
    statistics sigma_data = "data" needs, so training never scans the set."""
    from difftk.data.pack import finish, pack_split
    from difftk.data.pack_source import crop_rule, open_source
    from difftk.data.packed import Manifest
    from difftk.errors import DataError

    if on_error not in ("stop", "skip"):
        raise DataError(f'--on-error must be "stop" or "skip" (got "{on_error}")')
    src = open_source(source, kind, resolution, center_crop, channels, set_)
    splits = src.splits()
    first = splits["train"][0]
    shape = list(first.item_shape)  # the first image fixes the size when none is given
    records = {}
    total = sum(len(items) for items, _ in splits.values())
    from difftk.cli.work_progress import counted_progress

    with counted_progress(total, "packing", "images") as advance:
        for name, (items, labels) in splits.items():
            records[name] = pack_split(items, labels, out, name, shard_items, workers, on_error,
                                       advance)
    dtype = str(first.stored_dtype).removeprefix("torch.")
    manifest = Manifest(item_shape=shape, dtype=dtype, white=src.raw.white,
                        resolution=getattr(src.data, "resolution", None) or shape[-1],
                        crop=crop_rule(src.data), source=str(source.resolve()),
                        class_names=list(src.raw.class_names or []),
                        num_classes=src.num_classes(), splits=records)
    finish(out, manifest)
    for name, rec in records.items():
        skipped = f", {len(rec.skipped)} skipped (listed in the manifest)" if rec.skipped else ""
        typer.echo(f"{name:6s} {rec.count} items {shape} {dtype} in {len(rec.shards)} "
                   f"shard(s){skipped}")
    typer.echo(f"wrote {out / 'manifest.json'}")


def verify(
    folder: Annotated[Path, typer.Argument(help="A folder written by difftk data pack.")],
):
    """Check every shard of a packed data set against the sha256 in its manifest."""
    from difftk.cli.work_progress import counted_progress
    from difftk.data.packed import read_manifest
    from difftk.data.packed import verify as verify_pack
    from difftk.errors import DataError

    manifest = read_manifest(folder)
    total = sum(s.count + (s.labels.count if s.labels else 0) for s in manifest.splits.values())
    with counted_progress(total, "verifying", "items") as advance:
        problems = verify_pack(folder, advance)
    if problems:
        raise DataError("; ".join(problems[:5]) + (f"; and {len(problems) - 5} more"
                                                    if len(problems) > 5 else ""))
    typer.echo(f"{folder}: every shard matches its checksum")


def encode(
    source: Annotated[Path, typer.Argument(help=(
        "The images to encode: a packed set, a folder, an EDM zip, or any source "
        "`difftk data pack` reads."))],
    latents: Annotated[Path, typer.Option(
        help="A TOML file whose [latents] section names the codec, as the files of "
             "recipes/latents/ do (a whole recipe works too).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder of the latent set (encoding "
                                      "again into it resumes).")],
    resolution: Annotated[int | None, typer.Option(
        min=4, help="Fit the images to this square size first (as difftk data pack).")] = None,
    flips: Annotated[bool, typer.Option(
        help="Also encode every image flipped left-right (split train_flipped), for recipes "
             "with data.hflip = true.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Images encoded at once.")] = 64,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    dtype: Annotated[str, typer.Option(help="Stored latents: float32 or float16.")] = "float32",
    shard_items: Annotated[int, typer.Option(min=1, help="Latents per shard file.")] = 8192,
    seed: Annotated[int, typer.Option(help="Seed of the posterior draws of sample = "
                                      '"encode".')] = 0,
):
    """Encode a data set once into a latent set (packed shards) for latent diffusion.

    Train on it with data.name = "packed", data.path = OUT and the same [latents]: the
    manifest records the codec (a digest of its weights and settings), and training refuses
    latents made with another. Under torchrun each process encodes its share of the shards."""
    import tomllib

    import numpy as np
    import torch

    from difftk.cli.work_progress import counted_progress
    from difftk.data.pack import collect_split, finish, pack_split
    from difftk.data.pack_source import crop_rule, open_source
    from difftk.data.packed import Manifest
    from difftk.errors import DataError, DifftkError
    from difftk.latents.encode_pack import EncodedItems, channel_moments
    from difftk.recipe import component_from_table
    from difftk.run.runtime import announce_failure, make_runtime

    runtime = None
    try:
        if dtype not in ("float32", "float16"):
            raise DataError(f'--dtype must be float32 or float16 (got "{dtype}")')
        try:
            table = tomllib.loads(latents.read_text()).get("latents")
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{latents}: is not a readable TOML file ({exc})") from None
        if not isinstance(table, dict):
            raise DataError(f"{latents}: has no [latents] section")
        part = component_from_table("latents", table, str(latents)).resolved()
        runtime = make_runtime(device, distributed=True)
        src = open_source(source, None, resolution, True, None, None, packed_ok=True)
        codec = part.build(lambda: src.data.load()).to(runtime.device)
        codec.eval()
        identity = codec.identity_record()
        if identity is None:
            raise DataError(f'the latents "{part.name}" are cheap to compute and are not '
                            "encoded once; name them in the recipe's [latents] and train on "
                            "the pixels")
        codec.generator = torch.Generator().manual_seed(seed)
        store = torch.float16 if dtype == "float16" else torch.float32
        splits = {}
        for name, (items, labels) in src.splits().items():
            splits[name] = (EncodedItems(codec, items, src.raw.white, runtime.device, batch_size,
                                         dtype=store), labels)
            if flips:
                splits[f"{name}_flipped"] = (EncodedItems(
                    codec, items, src.raw.white, runtime.device, batch_size, flip=True,
                    dtype=store), labels)
        total = sum(len(items) for items, _ in splits.values()) // runtime.world_size
        with counted_progress(total, "encoding", "images") as advance:
            for name, (items, labels) in splits.items():
                pack_split(items, labels, out, name, shard_items, 1, "stop",
                           advance if runtime.is_main else None, runtime.rank,
                           runtime.world_size)
        runtime.barrier()
        if runtime.is_main:
            records = {name: collect_split(out, name, len(items), shard_items, labels is not None)
                       for name, (items, labels) in splits.items()}
            train = records["train"]
            first = splits["train"][0]
            shape = list(first.item_shape)
            m = train.moments
            channels = getattr(codec, "latent_channels", shape[0])
            mean, std = channel_moments(np.array(m.mean), np.array(m.m2), m.count,
                                        identity.get("sample", "mean"), channels)
            identity = {**identity, "latent_mean": mean, "latent_std": std,
                        "flipped_copies": flips}
            manifest = Manifest(item_shape=shape, dtype=dtype, white=None,
                                resolution=getattr(src.data, "resolution", None),
                                crop=crop_rule(src.data), source=str(source.resolve()),
                                class_names=list(src.raw.class_names or []),
                                num_classes=src.num_classes(), codec=identity, splits=records)
            finish(out, manifest)
            for name, rec in records.items():
                typer.echo(f"{name:14s} {rec.count} latents {shape} {dtype} in "
                           f"{len(rec.shards)} shard(s)")
            typer.echo(f"wrote {out / 'manifest.json'} (codec {identity['name']}, "
                       f"per-channel mean {[round(v, 4) for v in mean]}, std "
                       f"{[round(v, 4) for v in std]})")
        runtime.barrier()
    except DifftkError as exc:
        error = announce_failure(exc, runtime)
        if runtime is None or not runtime.distributed:
            raise error from None
        runtime.exit_process(fail(error).exit_code)
    if runtime is not None:
        runtime.close()
        runtime.exit_process(0)
