"""What a checkpoint's ``state.json`` may hold, checked before any of it is used.

``state.json`` carries the step, the network's data spec, the training time, the optimizer's
settings and the sha256 of every other file of the checkpoint; it also carries the sha256 of
itself (``state_sha256``, over its other fields in a canonical JSON form), so an edited step
or a flipped bit in the optimizer's betas is found like a damaged tensor file. Fields are
validated with bounds (a shape of 2^31 would ask for a TiB before anything else failed), and
a checkpoint whose record fails is not intact: readers fall back to the newest intact one.
Checkpoints written before ``state_sha256`` existed are read without it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_ELEMENTS = 1 << 31  # per item: 2^31 values (a 46k x 46k image) is already absurd

SELF_KEY = "state_sha256"


class SpecRecord(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    shape: list[int] = Field(min_length=1, max_length=8)
    out_channels: int = Field(ge=1, le=1 << 16)
    num_classes: int = Field(ge=0, le=1 << 24)

    @field_validator("shape")
    @classmethod
    def _bounded(cls, shape: list[int]) -> list[int]:
        total = 1
        for d in shape:
            if d < 1:
                raise ValueError("every dimension must be >= 1")
            total *= d
        if total > MAX_ELEMENTS:
            raise ValueError(f"{total} values per item is beyond any network difftk builds")
        return shape


class StateRecord(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    step: int = Field(ge=0, le=10 ** 15)
    spec: SpecRecord
    files: dict[str, str]
    train_seconds: float | int = Field(0.0, ge=0)
    kind: str = "image"
    optimizer: dict[str, Any] | None = None


def state_digest(state: dict) -> str:
    body = {k: v for k, v in state.items() if k != SELF_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def sealed(state: dict) -> dict:
    """``state`` with its own checksum."""
    return state | {SELF_KEY: state_digest(state)}


def state_problem(state: dict) -> str | None:
    """Why ``state`` cannot be trusted (its checksum, a field's type or bound), or None."""
    if SELF_KEY in state and state[SELF_KEY] != state_digest(state):
        return "state.json is damaged or edited (its own checksum does not match)"
    try:
        StateRecord.model_validate(state)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        return f"state.json's {where!r} is invalid ({err['msg']})"
    return None
