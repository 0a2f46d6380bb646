"""A long recipe-fuzzing run: many hostile recipes and --set lists, counting escapes.

The same properties as tests/test_recipe_fuzz.py (a recipe validates, or is refused with
one line per problem; never another exception), but with fresh random examples and every
failure collected instead of stopping at the first. Prints the number of cases, how many
broke the invariant, and one example per distinct failure.

    PYTHONPATH=src python benchmarks/recipe_fuzz.py --examples 5000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
os.environ.setdefault("DIFFTK_LOAD_PLUGINS", "")  # difftk's own components only

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from recipe_strategies import BASES, hostile_recipes, set_items  # noqa: E402
from test_recipe_fuzz import check_overrides, check_recipe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000, help="cases per property")
    args = parser.parse_args()
    failures: Counter[str] = Counter()
    examples: dict[str, str] = {}
    counts = {"cases": 0}

    def record(run, case) -> None:
        counts["cases"] += 1
        try:
            run()
        except Exception as exc:  # the benchmark counts every escape, of any kind
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            key = f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}"
            failures[key] += 1
            examples.setdefault(key, f"{str(exc)[:300]!r} for {case!r}"[:800])

    common = settings(max_examples=args.examples, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))

    @common
    @given(hostile_recipes())
    def recipes(data):
        record(lambda: check_recipe(data), data)

    @common
    @given(st.sampled_from(sorted(BASES)), st.lists(set_items, min_size=1, max_size=4))
    def overrides(base, items):
        record(lambda: check_overrides(BASES[base], items), items)

    start = time.perf_counter()
    recipes()
    overrides()
    elapsed = time.perf_counter() - start
    broken = sum(failures.values())
    print(f"{counts['cases']} cases in {elapsed:.0f}s; {broken} broke the invariant "
          f"({len(failures)} distinct)")
    for key, n in failures.most_common():
        print(f"  {n:6d}  {key}\n          e.g. {examples[key]}")
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
