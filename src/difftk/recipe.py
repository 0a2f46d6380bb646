"""Recipes: TOML in, validated components out, fully resolved TOML back.

Each component section is ``{name = "...", ...params}`` validated against the
component's own pydantic model; ``run``, ``train`` and ``log`` are plain settings.
``--set a.b=v`` overrides any field before validation; setting a section's ``name``
drops the parameters the file gave the old component (they belong to it) and says so.
Every problem is reported with the recipe path of the field.
"""

from __future__ import annotations

import difflib
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from difftk.diffusion.table_rule import table_problems
from difftk.errors import DifftkError, RecipeError, UnknownComponentError, quoted, with_article
from difftk.families import BY_NAME, BY_SECTION, FAMILIES
from difftk.plugin_guard import component_boundary

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


@dataclass
class Recipe:
    """A validated recipe: settings sections and one component per family."""

    run: RunSection
    train: TrainSection
    log: LogSection
    parts: dict[str, Any]  # section -> Component

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run": self.run.model_dump(), "train": self.train.model_dump(),
                               "log": self.log.model_dump()}
        for section in COMPONENT_SECTIONS:
            part = self.parts[section]
            # TOML has no null: an unset optional parameter is left out (its default is None).
            out[section] = {"name": part.name,
                            **{k: v for k, v in part.params().items() if v is not None}}
        return out

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def with_parts(self, **updates) -> Recipe:
        return Recipe(self.run, self.train, self.log, {**self.parts, **updates})

    def loggers(self, registry=None) -> list[Any]:
        """The logger components that ``log.backends`` lists (validated)."""
        from difftk.registry import default_registry

        parts, problems = logger_parts(self.log, registry or default_registry())
        if problems:
            raise RecipeError(problems)
        return parts


def logger_parts(log: LogSection, registry) -> tuple[list[Any], list[tuple[str, str]]]:
    """log.backends as logger components, and the problems with its entries."""
    family = BY_NAME["loggers"]
    parts: list[Any] = []
    problems: list[tuple[str, str]] = []
    for index, item in enumerate(log.backends):
        path = f"log.{family.names_field}.{index}"
        raw = {"name": item} if isinstance(item, str) else dict(item)
        name = raw.pop("name", None)
        if not isinstance(name, str):
            problems.append((path, f'must name {with_article(family.noun)} ("jsonl", or a table '
                                   f'{{name = "wandb", ...}})'))
            continue
        try:
            entry = registry.get(family.name, name)
        except UnknownComponentError as exc:
            problems.append((path, str(exc)))
            continue
        if any(p.name == name for p in parts):
            problems.append((path, f"lists {quoted(name)} a second time"))
            continue
        try:
            with component_boundary(entry, "checking its parameters"):
                parts.append(entry.cls.model_validate(raw))
        except ValidationError as exc:
            problems += _errors(exc, path, entry.cls)
        except DifftkError as exc:
            problems.append((path, str(exc)))
    return parts, problems


def parse_value(raw: str) -> Any:
    """A --set value as TOML (numbers, booleans, lists, quoted strings); else a bare string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return raw


def _split_override(item: str) -> tuple[list[str], Any] | str:
    """ "section.key=value" as (path, value), or the sentence saying what is wrong with it."""
    if any(ord(c) < 32 and c != "\t" for c in item):
        # A newline would let the value add TOML keys of its own (v = 1 \n other = 2).
        return (f"--set {item!r} holds a newline or control character; a value is one line "
                f'(write "\\n" inside a quoted string)')
    key, sep, raw = item.partition("=")
    path = [part.strip() for part in key.split(".")]
    if not sep or len(path) < 2 or not all(path):
        return f"--set {quoted(item)} is not of the form section.field=value"
    return path, parse_value(raw.strip())


def _carried(section: str, new_name, old: dict) -> set[str]:
    """Settings a sampler switch keeps: those the new sampler declares too (steps, grid,
    guidance, clip_denoised, ...), so ``--sampler ddim`` on a recipe that clips keeps
    clipping. Other sections start afresh: a field of one architecture or schedule shares
    a name, not a meaning, with another's."""
    if section != "sampler" or not isinstance(new_name, str):
        return set()
    from difftk.registry import default_registry

    try:
        fields = default_registry().get(BY_SECTION[section].name, new_name).cls.model_fields
    except DifftkError:
        return set()
    return {k for k in old if k != "name" and k in fields}


def apply_overrides(data: dict[str, Any], overrides: list[str],
                    dropped: list[str] | None = None) -> list[tuple[str, str]]:
    """Apply "section.key=value" overrides in place; return problems as (path, sentence)."""
    problems: list[tuple[str, str]] = []
    parsed = []
    for item in overrides:
        split = _split_override(item)
        if isinstance(split, str):
            problems.append(("", split))
        else:
            parsed.append(split)
    # Name changes first: they reset the section, later keys then fill it.
    for path, value in sorted(parsed, key=lambda p: p[0][1:] != ["name"]):
        section = path[0]
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            problems.append((section, "is not a section"))
            continue
        if path[1:] == ["name"] and section in BY_SECTION and target.get("name") != value:
            shared = _carried(section, value, target)
            old = [k for k in target if k != "name" and k not in shared]
            if old and dropped is not None:
                dropped.append(f"{section}: {', '.join(old)} (parameters of "
                               f"{target.get('name')})")
            kept = {k: target[k] for k in shared}
            target.clear()
            target.update(kept)
        for depth, key in enumerate(path[1:-1], start=1):
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                where = ".".join(path[:depth + 1])
                problems.append((where, f"is {_kind(target)}, not a table, so --set "
                                        f"{'.'.join(path)} cannot set a field inside it"))
                break
        else:
            target[path[-1]] = value
    return problems


def _kind(value: Any) -> str:
    """ "a string", "an integer", ... for sentences about a TOML value."""
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list"}
    return next((n for t, n in names.items() if isinstance(value, t)), "a value")


def _pydantic_message(err: dict, cls: type) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        field = str(err["loc"][-1])
        accepted = list(cls.model_fields)
        close = difflib.get_close_matches(field, accepted, n=1)
        hint = f'; did you mean "{close[0]}"?' if close else ""
        owner = getattr(cls, "name", "") or cls.__name__
        return (f"{owner} has no parameter {quoted(field)}{hint} "
                f"(accepts: {', '.join(accepted) or 'none'})")
    if kind == "missing":
        return "is required"
    msg = msg.removeprefix("Value error, ")
    if "overflow" in msg.lower() or "too big" in msg.lower():
        # pydantic's and torch's "Overflow when unpacking long long" and the like.
        msg = "holds a number too large to compute with"
    text = msg[0].lower() + msg[1:] if msg else kind
    text = text.replace("input should be", "must be")
    if "input" in err and not isinstance(err["input"], dict):
        text += f" (got {_short_repr(err['input'])})"
    field = cls.model_fields.get(str(err["loc"][0])) if err["loc"] else None
    if kind in BOUND_ERRORS and field is not None and field.description:
        text += f" ({err['loc'][0]}: {field.description})"  # the bound's reason
    return text


# pydantic error types of a number or a length outside its Field bounds.
BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal",
                "too_long", "too_short", "finite_number"}


def _printable(key: str) -> str:
    """A key as typed, or its repr when it holds a newline or other control character."""
    return key if key.isprintable() else repr(key)


def _short_repr(value: Any, limit: int = 80) -> str:
    """repr of a value for a message, cut so one bad value cannot fill the screen."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 5] + " ...)"


def _errors(exc: ValidationError, prefix: str, cls: type) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        loc = [_printable(str(p)) for p in err["loc"] if not str(p).startswith("function-")]
        path = ".".join([prefix, *loc]) if loc else prefix
        out.append((path, _pydantic_message(err, cls)))
    return out


def _migrate_lr_warmup(data: dict[str, Any], problems: list[tuple[str, str]]) -> dict[str, Any]:
    """The former ``train.lr_warmup_steps = N`` is ``[lr_schedule] name = "linear_warmup",
    warmup_steps = N`` (0: the default constant schedule), so older recipes and run
    directories keep loading; beside an [lr_schedule] section it is refused (it would be
    ignored)."""
    train = data.get("train")
    if not isinstance(train, dict) or "lr_warmup_steps" not in train:
        return data
    train = dict(train)
    warm = train.pop("lr_warmup_steps")
    data = {**data, "train": train}
    if not isinstance(warm, int) or isinstance(warm, bool) or warm < 0:
        problems.append(("train.lr_warmup_steps", f"must be a whole number >= 0 (got {warm!r})"))
    elif "lr_schedule" in data:
        problems.append(("train.lr_warmup_steps", f"has moved to [lr_schedule] (name = "
                         f'"linear_warmup", warmup_steps = {warm}, or the warmup_steps of '
                         f"another schedule) and this recipe has an [lr_schedule]: remove "
                         f"train.lr_warmup_steps"))
    elif warm:
        data["lr_schedule"] = {"name": "linear_warmup", "warmup_steps": warm}
    return data


def validate_settings(data: dict, sections: dict, registry) -> tuple[dict[str, Any], list]:
    """The plain-settings sections (``sections``: name -> model) of a parsed recipe, and the
    problems found in them (a [log] section's logger parts included)."""
    problems: list[tuple[str, str]] = []
    settings: dict[str, Any] = {}
    for section, cls in sections.items():
        raw = data.get(section, {})
        if not isinstance(raw, dict):
            problems.append((section, "must be a table"))
            continue
        try:
            settings[section] = cls.model_validate(raw)
        except ValidationError as exc:
            problems += _errors(exc, section, cls)
    if "log" in settings:
        problems += logger_parts(settings["log"], registry)[1]
    return settings, problems


def grid_problems(parts: dict[str, Any]) -> list[tuple[str, str]]:
    """A recipe that validates must sample: the sampler's grid of noise levels on the
    schedule must be built and fall strictly (a repeated level makes a step of length 0,
    which multistep solvers divide by)."""
    sampler, schedule = parts.get("sampler"), parts.get("schedule")
    if sampler is None or schedule is None:
        return []
    try:
        grid = sampler.noise_levels(schedule)
    except DifftkError as exc:
        return [("sampler", str(exc))]
    except (ArithmeticError, ValueError, IndexError, RuntimeError) as exc:
        return [("sampler", f"its grid cannot be built on this schedule ({exc})")]
    sigma = [float(v) for v in grid.sigma]
    if any(not (a == a) for a in sigma):
        return [("sampler", "its grid of noise levels holds NaN on this schedule")]
    repeats = [a for a, b in zip(sigma, sigma[1:], strict=False) if b >= a]
    if repeats:
        return [("sampler", f"its grid repeats or raises the noise level {repeats[0]:.4g} "
                            f"({len(repeats)} of {len(sigma) - 1} steps have no length on this "
                            "schedule); use fewer steps or a schedule with more levels")]
    return []


def validate(data: dict[str, Any], registry, source: str = "recipe") -> Recipe:
    """Validate a parsed recipe dict; raise RecipeError listing every problem."""
    problems: list[tuple[str, str]] = []
    data = _migrate_lr_warmup(data, problems)
    known = set(SETTINGS) | set(COMPONENT_SECTIONS)
    for section in data:
        if section not in known:
            close = difflib.get_close_matches(section, sorted(known), n=1)
            hint = f"; did you mean [{close[0]}]?" if close else ""
            problems.append((_printable(section), f"unknown section [{_printable(section)}]{hint}"))
    settings, found = validate_settings(data, SETTINGS, registry)
    problems += found
    parts: dict[str, Any] = {}
    for family in FAMILIES:
        if family.section not in BY_SECTION:
            continue  # a list in a settings section (log.backends), checked above
        raw = data.get(family.section)
        if raw is None:
            if family.default is None:
                problems.append((family.section, f"the recipe needs a [{family.section}] section "
                                 f"naming {with_article(family.noun)}"))
                continue
            raw = {"name": family.default}
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            problems.append((f"{family.section}.name", f"must name {with_article(family.noun)}"
                             + ("" if not isinstance(raw, dict) or "name" not in raw else
                                f" as a string (got {_short_repr(raw['name'])})")))
            continue
        try:
            entry = registry.get(family.name, str(raw["name"]))
        except UnknownComponentError as exc:
            problems.append((f"{family.section}.name", str(exc)))
            continue
        params = {k: v for k, v in raw.items() if k != "name"}
        try:
            with component_boundary(entry, "checking its parameters"):
                parts[family.section] = entry.cls.model_validate(params)
        except ValidationError as exc:
            problems += _errors(exc, family.section, entry.cls)
        except DifftkError as exc:
            problems.append((family.section, str(exc)))
    if not problems:
        problems += table_problems(parts)
        for section, part in parts.items():
            entry = registry.get(BY_SECTION[section].name, part.name)
            try:
                with component_boundary(entry, "checking the recipe"):
                    found = list(part.check(parts))
            except DifftkError as exc:
                problems.append((section, str(exc)))
                continue
            for path, msg in found:
                problems.append((f"{section}.{path}" if path else section, msg))
    if not problems:
        problems += grid_problems(parts)
    if problems:
        raise RecipeError(problems, source)
    return Recipe(settings["run"], settings["train"], settings["log"], parts)


def load_recipe(path: str | Path, overrides: list[str] | None = None, registry=None,
                warn=True) -> Recipe:
    """Read, override and validate a recipe file."""
    from difftk.registry import default_registry

    registry = registry or default_registry()
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise RecipeError([("", "no such recipe file")], source)
    data = parse_recipe_text(path, source)
    dropped: list[str] = []
    problems = apply_overrides(data, list(overrides or []), dropped)
    if problems:
        raise RecipeError(problems, source)
    if warn:
        for line in dropped:
            print(f"difftk: --set changed a name, so these were dropped: {line}", file=sys.stderr)
    return validate(data, registry, source)


def parse_recipe_text(path: Path, source: str) -> dict[str, Any]:
    """A recipe file's TOML as a dict, or a RecipeError saying why it cannot be read."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RecipeError([("", f"cannot be read ({exc.strerror or exc})")], source) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError([("", f"is not UTF-8 text (byte {exc.start} is "
                                f"0x{raw[exc.start]:02x}); TOML files are UTF-8")],
                          source) from None
    return toml_dict(text, source)


def toml_dict(text: str, source: str) -> dict[str, Any]:
    """Parse TOML text; a syntax error or nesting too deep to parse is one RecipeError."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError([("", f"is not valid TOML: {exc}")], source) from None
    except RecursionError:
        raise RecipeError([("", "nests arrays or tables too deeply to read")], source) from None


def recipe_from_text(text: str, registry=None, source: str = "recipe") -> Recipe:
    from difftk.registry import default_registry

    return validate(toml_dict(text, source), registry or default_registry(), source)




def component_from_spec(section: str, spec: str, registry=None, defaults: dict | None = None):
    """A component of a recipe section from "name" or "name:key=value:key=value" (the NAMES
    that difftk plot commands take). ``defaults`` fill parameters the component has and the
    spec leaves out (e.g. a sigma_data for plots, where there is no data set)."""
    from difftk.registry import default_registry

    registry = registry or default_registry()
    name, *settings = spec.split(":")
    params: dict[str, Any] = {}
    for item in settings:
        key, sep, raw = item.partition("=")
        if not sep:
            raise RecipeError([("", f'"{item}" is not of the form key=value')], spec)
        params[key.strip()] = parse_value(raw.strip())
    entry = registry.get(BY_SECTION[section].name, name)  # unknown names: did-you-mean
    for key, value in (defaults or {}).items():
        if key in entry.cls.model_fields and key not in params:
            params[key] = value
    try:
        with component_boundary(entry, "checking its parameters"):
            return entry.cls.model_validate(params)
    except ValidationError as exc:
        raise RecipeError(_errors(exc, section, entry.cls), spec) from None


def component_from_table(section: str, table: dict, source: str, registry=None):
    """A component of a recipe section from its TOML table ({name = ..., **params})."""
    from difftk.registry import default_registry

    registry = registry or default_registry()
    params = dict(table)
    name = params.pop("name", None)
    if not isinstance(name, str):
        raise RecipeError([(f"{section}.name", "is missing: name the component")], source)
    entry = registry.get(BY_SECTION[section].name, name)
    try:
        with component_boundary(entry, "checking its parameters"):
            return entry.cls.model_validate(params)
    except ValidationError as exc:
        raise RecipeError(_errors(exc, section, entry.cls), source) from None


def sampler_with_overrides(recipe: Recipe, name: str | None = None, steps: int | None = None,
                           guidance: float | None = None, sets: list[str] | None = None,
                           registry=None):
    """The recipe's sampler with a command line's changes (--sampler, --steps, --guidance,
    --set), validated against the rest of the recipe (e.g. ddpm needs a table)."""
    from difftk.registry import default_registry

    data = recipe.to_dict()
    overrides = list(sets or [])
    if name is not None:
        overrides.insert(0, f'sampler.name="{name}"')
    if steps is not None:
        overrides.append(f"sampler.steps={steps}")
    if guidance is not None:
        overrides.append(f"sampler.guidance={guidance}")
    problems = apply_overrides(data, overrides)
    if problems:
        raise RecipeError(problems, "--set")
    return validate(data, registry or default_registry(), "--set").parts["sampler"]
