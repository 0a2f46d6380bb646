"""Training a run through the CLI, as tests of commands that read a run directory need."""

from typer.testing import CliRunner

from difftk.cli import app

runner = CliRunner()


def train_run(root, out_dir, recipe, name, sets):
    """`difftk train recipe` into out_dir/name with the given --set items; the run directory."""
    args = ["train", str(root / recipe), "--no-progress", "--set", f'run.out_dir="{out_dir}"',
            "--set", f'run.name="{name}"']
    for item in sets:
        args += ["--set", item]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    return out_dir / name
