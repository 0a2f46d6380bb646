"""Progress when stdout is not a terminal: one plain line per log.every steps."""

import io
import re
import subprocess
import sys

from difftk.train.progress import ProgressLines, training_progress

LINE = re.compile(r"^step +(\d+)/(\d+)  loss (\S+)  images/s (\S+)  ETA (\d+:\d\d:\d\d)$")


def test_lines_report_step_loss_throughput_and_eta_from_the_clock():
    now = [100.0]
    out = io.StringIO()
    lines = ProgressLines(total=10, start=0, every=4, batch_size=32, stream=out,
                          clock=lambda: now[0])
    for step in range(1, 11):
        now[0] += 0.5  # half a second per step
        lines.advance(step, 0.25 if step >= 4 else float("nan"))
    got = out.getvalue().splitlines()
    # 4 steps x 32 images in 2 s; 6 steps left at 0.5 s each; the last step always prints
    assert got == ["step  4/10  loss 0.2500  images/s 64.0  ETA 0:00:03",
                   "step  8/10  loss 0.2500  images/s 64.0  ETA 0:00:01",
                   "step 10/10  loss 0.2500  images/s 64.0  ETA 0:00:00"]


def test_a_time_limit_that_comes_first_sets_the_eta():
    now = [0.0]
    out = io.StringIO()
    # 1,000,000 steps at 0.5 s each, but train.time_limit leaves 10 s
    lines = ProgressLines(total=1_000_000, start=0, every=4, batch_size=1, stream=out,
                          clock=lambda: now[0], time_left_s=10.0)
    for step in range(1, 5):
        now[0] += 0.5
        lines.advance(step, 0.1)
    assert out.getvalue().split("ETA ")[1].strip() == "0:00:08"


def test_a_terminal_gets_the_bar_and_a_file_the_lines():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    with training_progress(10, 0, every=5, stream=io.StringIO()) as display:
        assert isinstance(display, ProgressLines)
    with training_progress(10, 0, every=5, stream=Terminal()) as display:
        assert not isinstance(display, ProgressLines)
    with training_progress(10, 0, enabled=False, stream=io.StringIO()) as display:
        assert not isinstance(display, ProgressLines)


def test_a_run_whose_stdout_is_a_pipe_prints_a_line_every_log_every_steps(root, tmp_path):
    sets = [f'run.out_dir="{tmp_path}"', "model.width=16", "model.depth=1",
            "train.batch_size=32", "train.steps=12", "log.every=4", "log.val_every=0",
            "log.num_samples=8", "log.checkpoint_every=0", "log.tensorboard=false",
            "sampler.steps=2"]
    args = [sys.executable, "-m", "difftk", "train", str(root / "recipes/toy2d.toml")]
    for item in sets:
        args += ["--set", item]
    out = subprocess.run(args, capture_output=True, text=True,  # stdout is a pipe
                         timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    progress = [LINE.match(line) for line in lines[:-1]]
    assert all(progress), lines
    assert [int(m[1]) for m in progress] == [4, 8, 12] and {m[2] for m in progress} == {"12"}
    assert all(float(m[3]) > 0 and float(m[4]) > 0 for m in progress)
    assert lines[-1].startswith("trained 12 steps")
