"""Every command of the difftk CLI, registered here and only here, in the order of
``difftk --help``: the top-level commands, the groups (data, plot, analyze) and their
subcommands. Each command's function lives in its own module (one idea per file), which
registers nothing itself."""

from __future__ import annotations

from difftk.cli import (  # noqa: I001
    analyze,
    bench,
    compare,
    data,
    ema,
    eval,
    eval_stats,
    export,
    info,
    memory,
    new_plugin,
    plot,
    plot_forward_noising,
    plot_information,
    plot_lr_schedule,
    plot_noise_sampling,
    plot_schedules,
    plot_targets,
    plot_trajectory,
    plot_variance_ratio,
    plot_weights,
    plugins,
    sample,
    train,
    train_autoencoder,
    validate,
)
from difftk.cli.app import app


def register() -> None:
    """Register every command once (difftk.cli calls this on import)."""
    app.command(rich_help_panel="Training")(train.train)
    app.command("train-autoencoder", rich_help_panel="Training")(train_autoencoder.train_autoencoder)
    app.command(rich_help_panel="Generation")(sample.sample)
    app.command("eval", rich_help_panel="Generation")(eval.eval_command)
    app.command("eval-stats", rich_help_panel="Generation")(eval_stats.eval_stats)
    app.command(rich_help_panel="Generation")(ema.ema)
    app.command(rich_help_panel="Inspection")(validate.validate)
    app.command(rich_help_panel="Inspection")(info.info)
    app.command(rich_help_panel="Inspection")(memory.memory)
    app.add_typer(data.data_app, name="data", rich_help_panel="Inspection")
    data.data_app.command()(data.stats)
    data.data_app.command()(data.pack)
    data.data_app.command()(data.verify)
    data.data_app.command()(data.encode)
    app.command(rich_help_panel="Inspection")(bench.bench)
    app.add_typer(plot.plot_app, name="plot", rich_help_panel="Inspection")
    plot.plot_app.command("lr-schedule")(plot_lr_schedule.plot_lr_schedule)
    plot.plot_app.command("schedules")(plot_schedules.plot_schedules)
    plot.plot_app.command("noise-sampling")(plot_noise_sampling.plot_noise_sampling)
    plot.plot_app.command("weights")(plot_weights.plot_weights)
    plot.plot_app.command("targets")(plot_targets.plot_targets)
    plot.plot_app.command("information")(plot_information.plot_information)
    plot.plot_app.command("variance-ratio")(plot_variance_ratio.plot_variance_ratio)
    plot.plot_app.command("forward-noising")(plot_forward_noising.plot_forward_noising)
    plot.plot_app.command("trajectory")(plot_trajectory.plot_trajectory)
    app.add_typer(analyze.analyze_app, name="analyze", rich_help_panel="Inspection")
    analyze.analyze_app.command("information")(analyze.information)
    analyze.analyze_app.command("gradients")(analyze.gradients)
    analyze.analyze_app.command("targets")(analyze.targets)
    analyze.analyze_app.command("gradient-noise")(analyze.gradient_noise)
    analyze.analyze_app.command("variance-gradients")(analyze.variance_gradients)
    app.command("compare", rich_help_panel="Inspection")(compare.compare)
    app.command(rich_help_panel="Generation")(export.export)
    app.command("list-plugins", rich_help_panel="Plugins")(plugins.list_plugins)
    app.command("new-plugin", rich_help_panel="Plugins")(new_plugin.new_plugin)
