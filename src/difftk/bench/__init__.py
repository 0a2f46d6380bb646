"""``difftk bench``: how fast a recipe trains, measured against a raw loop and diffusers.

One idea per module: ``clock`` (synchronised timing, medians), ``peaks`` (devices' dense
peak FLOP/s), ``difftk_loop`` (the library's own training step, built as the trainer
builds it), ``step_split`` (where one step's time goes), ``raw_loop`` and
``diffusers_loop`` (the hand-written and diffusers baselines), ``interleave`` (steps of
every subject taken in turn), ``sampling`` (sampler cost per network evaluation),
``report`` (figures, ratios, JSON).
"""
