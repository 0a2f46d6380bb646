"""One rule for the parts defined through a t-space schedule's table of T levels.

DESIGN.md: every combination of families is legal except the ones that cannot work, and
those fail at validation with a sentence that says why. A DDPM ancestral sampler, the ELBO
weighting, the variational bound, a learned variance and the posterior-mean target all use
the steps t -> t - 1 of a table, which a sigma-space schedule does not have. Each such part
declares it (``needs_table``, or ``table_need()`` where a parameter brings the need) and
recipe validation checks every part against the schedule here, with one sentence shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel


@dataclass(frozen=True)
class TableNeed:
    """Why a part needs a table: the parameter that brings the need, what the part does with
    the table, and what to use instead ("" for another member of the part's family)."""

    field: str
    does: str
    instead: str = ""
    subject: str = ""  # the sentence's subject; "" for "the <name> <noun>"


class UsesTable(BaseModel):
    """Mixin of the families whose members may need a t-space schedule's table."""

    # What the part does with a table of T levels ("steps through"); "" when it needs none.
    needs_table: ClassVar[str] = ""
    # What to use on a schedule without a table; "" for another member of the family.
    without_table: ClassVar[str] = ""

    def table_need(self) -> TableNeed | None:
        """The part's need of a table, or None."""
        if not self.needs_table:
            return None
        return TableNeed("name", self.needs_table, self.without_table)


def table_problems(parts: dict) -> list[tuple[str, str]]:
    """(recipe path, sentence) for each part that needs a table the recipe's schedule lacks."""
    from difftk.families import BY_SECTION

    schedule = parts.get("schedule")
    if schedule is None or getattr(schedule, "has_table", False):
        return []
    problems = []
    for section, part in parts.items():
        need = part.table_need() if isinstance(part, UsesTable) else None
        if need is None:
            continue
        noun = BY_SECTION[section].noun if section in BY_SECTION else section
        subject = need.subject or f"the {part.name} {noun}"
        problems.append((f"{section}.{need.field}",
                         f'{subject} {need.does} a table of T levels, and the schedule '
                         f'"{schedule.name}" has none; use a t-space schedule or '
                         f'{need.instead or "another " + noun}'))
    return problems
