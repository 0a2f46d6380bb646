"""Help and tables show what the source says: every [bracketed] text survives rendering."""

import re
import subprocess
import sys

import typer
from typer.testing import CliRunner

from difftk.cli import app

runner = CliRunner()
WIDE = {"COLUMNS": "2000"}  # no wrapping, so a bracketed text stays on one line
BRACKETED = re.compile(r"\[[^\[\]\n]*\]")


def _flat(text: str) -> str:
    return " ".join(text.split())


def _commands(command, path=()):
    """(argument path, click command) for the app and every command and sub-command."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def _source_texts(command) -> list[str]:
    """The help texts a command's --help shows, as the source wrote them."""
    texts = [command.help or "", command.short_help or ""]
    texts += [p.help for p in command.params if getattr(p, "help", None)]
    # a group lists each sub-command with the first paragraph of its help
    texts += [(sub.short_help or sub.help or "").split("\n\n")[0]
              for sub in getattr(command, "commands", {}).values()]
    return texts


def test_every_help_page_keeps_its_bracketed_text():
    checked = set()
    for path, command in _commands(typer.main.get_command(app)):
        wanted = {_flat(m) for text in _source_texts(command) for m in BRACKETED.findall(text)}
        result = runner.invoke(app, [*path, "--help"], env=WIDE)
        assert result.exit_code == 0, (path, result.output)
        shown = _flat(result.stdout)
        for text in wanted:
            assert text in shown, f"difftk {' '.join(path)} --help lost {text!r}"
        checked |= wanted
    # the texts the rich markup used to eat are among those checked
    assert {"[lists]", "[model]", "[data]"} <= checked


def test_list_plugins_table_keeps_section_names_and_bracketed_summaries(registry):
    from difftk.families import FAMILIES

    result = runner.invoke(app, ["list-plugins"], env=WIDE)
    assert result.exit_code == 0, result.output
    shown = _flat(result.stdout)
    wanted = set()
    for fam in FAMILIES:
        wanted.add(f"{fam.name} [{fam.section}]")
        for name in registry.names(fam.name):
            wanted |= {_flat(m) for m in BRACKETED.findall(registry.get(fam.name, name).cls.summary())}
    for text in wanted:
        assert text in shown, f"list-plugins lost {text!r}"
    assert "weights [weight]" in wanted and len(wanted) > len(FAMILIES)


def test_train_is_the_first_command_of_the_main_help():
    result = runner.invoke(app, ["--help"], env=WIDE)
    names = re.findall(r"^│ ([a-z][a-z-]*) ", result.stdout, flags=re.MULTILINE)
    assert names[0] == "train" and {"sample", "eval", "list-plugins"} <= set(names)


def test_python_dash_m_difftk_runs_the_command_line(root):
    out = subprocess.run([sys.executable, "-m", "difftk", "validate",
                          str(root / "recipes/toy2d.toml"), "--set", "train.steps=7"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "steps = 7" in out.stdout and 'name = "toy2d"' in out.stdout
    bad = subprocess.run([sys.executable, "-m", "difftk", "validate", str(root / "nowhere.toml")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and bad.stderr.startswith("error: ") and not bad.stdout


def test_help_paragraphs_flow_to_the_terminal_width():
    # a docstring's own line breaks, after its first paragraph, used to show mid-sentence
    result = runner.invoke(app, ["compare", "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert any("recipe fields that differ; the curves are" in line
               for line in result.stdout.splitlines())


def test_no_help_page_cuts_a_word_on_an_80_column_terminal():
    """A word longer than its column is cut with an ellipsis by the help renderer; every
    character of every help page must show on a common terminal."""
    cut = []
    for path, _ in _commands(typer.main.get_command(app)):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0, (path, result.output)
        cut += [f"difftk {' '.join(path)}: {line.strip()}" for line in result.stdout.splitlines()
                if "…" in line]
    assert not cut, "\n".join(cut)


def test_every_command_is_registered_once_in_commands_py():
    """cli/commands.py registers every command and group; no other module registers one."""
    import re
    from pathlib import Path

    import difftk.cli
    from difftk.cli.app import app

    cli = Path(difftk.cli.__file__).parent
    for path in cli.glob("*.py"):
        if path.name == "commands.py":
            continue
        text = path.read_text()
        assert not re.search(r"^@\w+\.command\(|^\w+\.add_typer\(", text, re.M), path.name
    names = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]
    names += [g.name for g in app.registered_groups]
    assert len(names) == len(set(names)), names
