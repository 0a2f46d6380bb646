"""The settings sections of a recipe ([run], [train], [log]): plain pydantic models."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from difftk.errors import quoted
from difftk.families import BY_NAME, BY_SECTION

# The devices a run can train on; torch also parses "meta", "mps", "vulkan", ..., on which
# difftk's training loop cannot run (no data on meta, no float64 tables on mps).
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"
# Longest file name on common file systems (ext4, APFS, NTFS count 255 bytes or units).
MAX_NAME_BYTES = 255


class _Section(BaseModel):
    # NaN and inf pass no bound check (every comparison with NaN is false): refuse them.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class RunSection(_Section):
    """Where the run goes and how it is seeded."""

    name: str = Field("run", min_length=1, description="run directory name under out_dir "
                      "(one path component: no separator, no .., at most 255 bytes)")
    out_dir: str = Field("runs", description="parent directory of run directories")
    seed: int = Field(0, ge=0, lt=2**62, description="seed of every random stream in the run "
                      "(0 to 2^62: each stream adds an offset and must fit torch's 64-bit seed)")
    device: str = Field("auto", description='"auto" (cuda if available), "cpu", "cuda", "cuda:1"')

    @field_validator("name")
    @classmethod
    def _one_path_component(cls, name: str) -> str:
        """The run directory is out_dir/name: anything else would write outside out_dir."""
        if "/" in name or "\\" in name or name in (".", ".."):
            raise PydanticCustomError(
                "run_name", "must be one directory name (no /, \\, . or ..) so the run "
                            "stays inside run.out_dir")
        if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise PydanticCustomError("run_name", f"is longer than {MAX_NAME_BYTES} bytes, "
                                                  "the longest file name file systems accept")
        if any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise PydanticCustomError("run_name", "must not contain NUL or other control "
                                                  "characters")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise PydanticCustomError("run_name", "must be valid UTF-8") from None
        return name

    @field_validator("out_dir")
    @classmethod
    def _a_writable_path(cls, out_dir: str) -> str:
        """A NUL byte, or bytes that are not UTF-8 (a shell passes them through as lone
        surrogates), can name no file difftk can create and record."""
        if "\x00" in out_dir:
            raise PydanticCustomError("out_dir", "must not contain a NUL byte")
        try:
            out_dir.encode("utf-8")
        except UnicodeEncodeError:
            raise PydanticCustomError("out_dir", "must be valid UTF-8 (it holds bytes that are "
                                                 "not)") from None
        return out_dir

    @field_validator("device")
    @classmethod
    def _trainable_device(cls, device: str) -> str:
        if not re.fullmatch(DEVICE_PATTERN, device):
            raise PydanticCustomError(
                "run_device", 'must be "auto", "cpu", "cuda" or "cuda:N" (the devices difftk '
                              "trains on)")
        return device


class TrainSection(_Section):
    """The optimisation loop."""

    steps: int = Field(1000, ge=1, le=10**9, description="optimizer steps in total")
    batch_size: int = Field(128, ge=1, le=2**20, description="images per optimizer step, over "
                            "all processes (the global batch)")
    grad_accumulation: int = Field(1, ge=1, le=2**20, description="micro-batches per optimizer "
                                   "step on each process (same result, a fraction of the memory)")
    strategy: Literal["ddp", "fsdp"] = Field("ddp", description="under torchrun: ddp (a whole "
                                             "copy per device) or fsdp (FSDP2, sharded)")
    compile: bool | Literal["auto"] = Field(False, description="torch.compile the network; auto: "
                                            "where measured faster (nn/auto_speed.py)")
    time_limit: float = Field(0.0, ge=0, description="stop after this many minutes of training "
                              "in all (a resumed run counts its earlier sessions; 0: no limit), "
                              "with a checkpoint and samples as at the last step; decaying "
                              "lr schedules end with it")
    nan_guard: bool = Field(True, description="skip steps whose loss or gradients are non-finite "
                            "(read on the host every log.every steps with fused Adam / AdamW, "
                            "else one host sync per step)")
    nan_patience: int = Field(3, ge=1, description="non-finite steps in a row before the last "
                              "checkpoint is restored")
    nan_lr_factor: float = Field(0.5, gt=0, lt=1, description="learning-rate factor after a restore")
    nan_max_restores: int = Field(1, ge=0, description="restores before training stops")
    init_from: str = Field("", description="initial weights: checkpoint, .safetensors or diffusers folder")
    class_conditional: bool = Field(False, description="condition the network on the data "
                                    "set's class labels (their count comes from the data)")
    label_dropout: float = Field(0.0, ge=0, lt=1, description="share of labels replaced by "
                                 "the null label, so one network also learns p(x) for "
                                 "classifier-free guidance (Ho & Salimans 2022 use 0.1-0.2)")

    @model_validator(mode="after")
    def _dropout_needs_labels(self):
        if self.label_dropout > 0 and not self.class_conditional:
            raise PydanticCustomError("dependent_field",
                                      "label_dropout needs class_conditional = true")
        return self


class LogSection(_Section):
    """What is written, and how often (in optimizer steps; 0 disables)."""

    every: int = Field(100, ge=1, description="scalars to TensorBoard and the progress bar")
    val_every: int = Field(500, ge=0, description="validation loss on the held-out split")
    sample_every: int = Field(0, ge=0, description="sample grid (always at the end)")
    checkpoint_every: int = Field(1000, ge=0, description="checkpoint (always at the end)")
    keep_last: int = Field(3, ge=1, description="checkpoints kept on disk")
    num_samples: int = Field(64, ge=1, le=10_000, description="samples in each grid (at most "
                             "10,000: a grid is drawn as one batch)")
    backends: list[str | dict[str, Any]] = Field(
        default_factory=lambda: [BY_NAME["loggers"].default], max_length=16,
        description='loggers every record goes to: names ("tensorboard", "jsonl", "csv", '
        '"wandb") or tables {name = "wandb", project = "..."}; [] logs nothing')
    tensorboard: bool = Field(True, description="false: no TensorBoard events even where "
                              "backends lists tensorboard (a switch for tests and sweeps)")
    eval_every: int = Field(0, ge=0, description="the metrics of eval_metrics, of the EMA "
                            "model on held-out data (learning curves under eval/)")
    eval_metrics: list[Literal["fid", "nll", "mse"]] = Field(
        default_factory=lambda: ["fid", "nll", "mse"], max_length=3,
        description='what eval_every measures: "fid" (sample metrics: pixel FID, KID; energy '
        'and sliced Wasserstein for 2-D data), "nll" (the bound in bits/dim) and "mse" (mean '
        "MSE of the reverse-process mean; seed 003 Tables 5.1, 6.1); nll and mse need a "
        "t-space schedule and pixel images, and are skipped with a note where they do not apply")
    eval_samples: int = Field(500, ge=2, le=1_000_000, description="samples drawn for each "
                              "evaluation of the sample metrics")
    eval_items: int = Field(64, ge=1, le=100_000, description="held-out items (the first ones, "
                            "with fixed noise) scored by nll and mse; each costs T network calls")
    grad_variance_every: int = Field(0, ge=0, description="per-sample gradient variance and "
                                     "share of the gradient by noise-level bucket (seed 000 "
                                     "§3.3, seed 001 §5.2) on a fixed held-out batch")
    grad_variance_samples: int = Field(64, ge=4, le=10_000, description="items in that batch "
                                       "(one backward pass each)")
    grad_variance_buckets: int = Field(4, ge=1, le=64, description="equal-count logSNR buckets")
    grad_variance_targets: list[str] = Field(
        default_factory=lambda: ["run"], min_length=1, max_length=8,
        description='whose per-sample loss gradient: "run" (the run\'s own loss: target, '
        'weighting, importance weight) and any of "x0", "eps", "v", "edm" (unweighted MSE)')

    @field_validator("backends", "eval_metrics", "grad_variance_targets", mode="before")
    @classmethod
    def _one_name_is_a_list(cls, value: Any) -> Any:
        """--set log.backends=jsonl means ["jsonl"]."""
        return [value] if isinstance(value, str) else value

    @field_validator("eval_metrics", "grad_variance_targets")
    @classmethod
    def _each_once(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise PydanticCustomError("duplicate", "names an entry twice")
        return names

    @field_validator("grad_variance_targets")
    @classmethod
    def _known_targets(cls, names: list[str]) -> list[str]:
        known = ("run", "x0", "eps", "v", "edm")  # analysis/gradient_variance.py
        for name in names:
            if name not in known:
                raise PydanticCustomError("target", "{name} is not one of {known}",
                                          {"name": quoted(name), "known": ", ".join(known)})
        return names

    @model_validator(mode="after")
    def _buckets_fit_the_batch(self):
        if self.grad_variance_samples < 2 * self.grad_variance_buckets:
            raise PydanticCustomError("dependent_field", "grad_variance_samples must be at "
                                      "least twice grad_variance_buckets (two items per bucket)")
        return self


SETTINGS: dict[str, type[_Section]] = {"run": RunSection, "train": TrainSection,
                                       "log": LogSection}
COMPONENT_SECTIONS = list(BY_SECTION)
