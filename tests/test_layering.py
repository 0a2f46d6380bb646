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

ROOM_NAMES = {"diffusion": "the mathematics", "train": "the loop", "cli": "the CLI",
              "plugins": "the built-ins", "data": "the data", "nn": "the network blocks",
              "optim": "the engineering contracts", "latents": "the representations"}

# importing room -> rooms it must not import, and why
FORBIDDEN: dict[str, dict[str, str]] = {
    "diffusion": {"train": "no I/O or loop in the mathematics", "cli": "no CLI in the mathematics",
                  "plugins": "the mathematics names no concrete part"},
    "plugins": {"train": "built-ins depend on contracts only, never the loop",
                "cli": "built-ins depend on contracts only, never the CLI"},
    "train": {"plugins": "the loop gets components from the registry, never by import"},
    "data": {"train": "data sets know nothing of the loop"},
    "nn": {"train": "network blocks know nothing of the loop",
           "cli": "network blocks know nothing of the CLI",
           "plugins": "network blocks name no concrete part"},
    "latents": {"train": "a representation's mathematics holds no loop",
                "cli": "representations know nothing of the CLI",
                "plugins": "the latents' contracts name no concrete part"},
    "optim": {"train": "the engineering contracts hold no loop",
              "cli": "the engineering contracts know nothing of the CLI",
              "plugins": "the engineering contracts name no concrete part"},
}


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
    return parts[1] if len(parts) > 1 and parts[0] == "difftk" else None


def violations(src: Path = SRC) -> list[Violation]:
    found = []
    for path in sorted((src / "difftk").rglob("*.py")):
        importer = room_of(_module_name(path, src))
        rules = FORBIDDEN.get(importer or "", {})
        for line, module in imported_modules(path, src):
            imported = room_of(module)
            if imported in rules and imported != importer:
                rule = (f"{importer}/ ({ROOM_NAMES[importer]}) must not import "
                        f"{imported}/ ({ROOM_NAMES[imported]}): {rules[imported]}")
                found.append(Violation(str(path.relative_to(src)), line, module, rule))
    return sorted(set(found), key=lambda v: (v.file, v.line, v.imported))


def test_no_room_imports_what_the_layout_forbids():
    found = violations()
    assert not found, "forbidden imports:\n  " + "\n  ".join(map(str, found))


def test_the_walk_sees_nested_relative_and_dynamic_imports(tmp_path):
    """The checker itself: a function-level relative import, a ``from difftk import`` of a
    room and an import_module string are each caught with their file and line."""
    pkg = tmp_path / "difftk"
    for room in ("diffusion", "train", "plugins", "optim"):
        (pkg / room).mkdir(parents=True)
        (pkg / room / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "diffusion" / "bad.py").write_text(
        "def f():\n    from ..train import trainer\n    return trainer\n")
    (pkg / "optim" / "bad.py").write_text("from difftk import plugins\n")
    (pkg / "train" / "bad.py").write_text(
        "from importlib import import_module\nx = import_module('difftk.plugins.ema')\n")
    (pkg / "plugins" / "fine.py").write_text("from difftk.optim import ema\n")
    found = {(v.file, v.line, v.imported) for v in violations(tmp_path)}
    assert found == {("difftk/diffusion/bad.py", 2, "difftk.train"),
                     ("difftk/optim/bad.py", 1, "difftk.plugins"),
                     ("difftk/train/bad.py", 2, "difftk.plugins.ema")}
    text = "\n".join(map(str, violations(tmp_path)))
    assert "difftk/optim/bad.py:1: imports difftk.plugins: optim/ (the engineering " \
           "contracts) must not import plugins/ (the built-ins)" in text
