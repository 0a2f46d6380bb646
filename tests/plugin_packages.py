"""Throwaway plugin packages for tests: a distribution with a difftk entry point on a
temporary sys.path entry (no pip), and the CLI run against it in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def fake_distribution(tmp_path: Path, dist: str, module_source: str,
                      module: str = "fake_mod") -> None:
    """A distribution on sys.path with a difftk entry point, without pip."""
    info = tmp_path / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[difftk]\n{dist} = {module}\n")
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(module_source))


def run_cli(tmp_path: Path, *args: str, env_extra: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m difftk.cli ARGS`` with tmp_path importable and every plugin loaded."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DIFFTK_LOAD_PLUGINS", "DIFFTK_PLUGINS_DIR", "DIFFTK_DEBUG")}
    src = Path(__file__).resolve().parent.parent / "src"
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(src)])
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "difftk.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)
