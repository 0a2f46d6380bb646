"""The rooms of src/difftk depend on each other only as DESIGN.md's layout allows.

Every import of every module is read with ``ast`` (imports inside functions too; relative
imports resolved against the importing package; ``import_module("...")`` with a literal
name counted as an import), and each (importing room, imported room) pair is checked
against the rules below.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

# The rooms of src/difftk (a subpackage, or a group of top-level modules) and, for each, what
# it is and the rooms it may import: the one table of DESIGN.md's layout. A room may always
# import itself. The table must be acyclic (test_the_rules_form_a_dag), so an import graph
# that keeps to it has no cycle between rooms.
GROUPS = {"errors": "core", "__version__": "core", "component": "core", "families": "core",
          "hookspecs": "core", "optional_package": "core", "plugin_guard": "core",
          "logger": "core", "recipe": "recipe", "registry": "recipe", "plugin_listing": "recipe",
          "__main__": "cli"}
RULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "core": ("the contracts' foundation (errors, components, families, hookspecs)", ()),
    "diffusion": ("the mathematics", ("core",)),
    "optim": ("the engineering contracts", ("core",)),
    "nn": ("the network blocks", ("core", "diffusion")),
    "recipe": ("recipes and the registry", ("core", "diffusion")),
    "data": ("the data", ("core", "recipe")),
    "latents": ("the representations", ("core", "data", "recipe", "nn")),
    "run": ("a run: its assembly, directory, checkpoints, log and processes",
            ("core", "recipe", "data", "diffusion", "latents", "nn", "optim")),
    "eval": ("sampling at scale and metrics",
             ("core", "recipe", "data", "diffusion", "latents", "nn", "run")),
    "analysis": ("the seeds' diagnostics and figures",
                 ("core", "recipe", "data", "diffusion", "latents", "nn", "optim", "run",
                  "eval")),
    "interop": ("other tools' formats", ("core", "recipe", "diffusion", "nn", "run")),
    "plugins": ("the built-ins", ("core", "recipe", "diffusion", "optim", "nn", "data",
                                  "latents", "interop")),
    "testing": ("contract checks for plugin authors",
                ("core", "recipe", "data", "diffusion", "nn", "optim")),
    "scaffold": ("the plugin scaffold", ("core",)),
    "train": ("the loop", ("core", "recipe", "data", "diffusion", "latents", "nn", "optim",
                           "run", "eval", "analysis", "interop")),
    "bench": ("the benchmark of the training step",
              ("core", "recipe", "data", "diffusion", "nn", "optim", "run", "interop",
               "train")),
    "cli": ("the CLI", ("core", "recipe", "data", "diffusion", "latents", "nn", "optim", "run",
                        "eval", "analysis", "interop", "train", "bench", "testing",
                        "scaffold")),
}
WHY = {"plugins": "built-ins depend on contracts only, never the loop, the run or the CLI",
       "diffusion": "the mathematics does no I/O, runs no loop and names no concrete part",
       "train": "the loop gets components from the registry, never by import"}


@dataclass(frozen=True)
class Violation:
    file: str
    line: int
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: imports {self.imported}: {self.rule}"


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(path: Path, src: Path) -> str:
    name = _module_name(path, src)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported_modules(path: Path, src: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, nested ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package(path, src).split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            out.append((node.lineno, module))
            if room_of(module) is None:  # ``from difftk import plugins``: the room is a name
                out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                out.append((node.lineno, node.args[0].value))
    return out


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "difftk":
        return None
    return GROUPS.get(parts[1], parts[1])


def room_graph(src: Path = SRC) -> dict[tuple[str, str], list[str]]:
    """(importing room, imported room) -> the "file:line" of each such import."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted((src / "difftk").rglob("*.py")):
        importer = room_of(_module_name(path, src))
        for line, module in imported_modules(path, src):
            imported = room_of(module)
            if importer and imported and imported != importer:
                edges.setdefault((importer, imported), []).append(
                    f"{path.relative_to(src)}:{line}")
    return edges


def violations(src: Path = SRC) -> list[Violation]:
    found = []
    for (importer, imported), places in room_graph(src).items():
        if importer not in RULES or imported in RULES[importer][1]:
            continue
        rule = (f"{importer}/ ({RULES[importer][0]}) must not import {imported}/ "
                f"({RULES.get(imported, ('?',))[0]})")
        if importer in WHY:
            rule += f": {WHY[importer]}"
        for place in places:
            file, line = place.rsplit(":", 1)
            found.append(Violation(file, int(line), imported, rule))
    return sorted(set(found), key=lambda v: (v.file, v.line, v.imported))


def cycles(edges) -> list[list[str]]:
    """Every strongly connected set of two or more rooms (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_room_has_a_rule():
    rooms = {room for edge in room_graph() for room in edge}
    rooms |= {room_of(f"difftk.{p.name}") for p in (SRC / "difftk").iterdir()
              if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms <= set(RULES), f"rooms without a rule: {sorted(rooms - set(RULES))}"


def test_the_rules_form_a_dag():
    allowed = [(a, b) for a, (_, deps) in RULES.items() for b in deps]
    assert all(b in RULES for _, b in allowed)
    assert cycles(allowed) == []


def test_no_room_imports_what_the_layout_forbids():
    found = violations()
    assert not found, "forbidden imports:\n  " + "\n  ".join(map(str, found))


def test_no_cycle_between_rooms():
    edges = room_graph()
    found = cycles(edges)
    detail = [f"{' <-> '.join(c)}: " + "; ".join(
        f"{a} -> {b} ({edges[(a, b)][0]})" for a in c for b in c if (a, b) in edges)
        for c in found]
    assert not found, "cycles between rooms:\n  " + "\n  ".join(detail)


def test_the_walk_sees_nested_relative_and_dynamic_imports(tmp_path):
    """The checker itself: a function-level relative import, a ``from difftk import`` of a
    room and an import_module string are each caught with their file and line, and a cycle
    between two rooms is found."""
    pkg = tmp_path / "difftk"
    for room in ("diffusion", "train", "plugins", "optim", "eval"):
        (pkg / room).mkdir(parents=True)
        (pkg / room / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "diffusion" / "bad.py").write_text(
        "def f():\n    from ..train import trainer\n    return trainer\n")
    (pkg / "optim" / "bad.py").write_text("from difftk import plugins\n")
    (pkg / "train" / "bad.py").write_text(
        "from importlib import import_module\nx = import_module('difftk.plugins.ema')\n")
    (pkg / "plugins" / "fine.py").write_text("from difftk.optim import ema\n")
    (pkg / "eval" / "back.py").write_text("from difftk.train import trainer\n")
    (pkg / "train" / "fine.py").write_text("from difftk.eval import metrics\n")
    found = {(v.file, v.line, v.imported) for v in violations(tmp_path)}
    assert found == {("difftk/diffusion/bad.py", 2, "train"),
                     ("difftk/optim/bad.py", 1, "plugins"),
                     ("difftk/train/bad.py", 2, "plugins"),
                     ("difftk/eval/back.py", 1, "train")}
    text = "\n".join(map(str, violations(tmp_path)))
    assert "difftk/optim/bad.py:1: imports plugins: optim/ (the engineering contracts) must " \
           "not import plugins/ (the built-ins)" in text
    assert ["eval", "train"] in cycles(room_graph(tmp_path))
