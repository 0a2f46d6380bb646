"""Models in and out of the diffusers ecosystem.

Out: ``difftk export --format diffusers`` writes a ``unet`` run as a diffusers
``UNet2DModel`` folder with its scheduler config (export.py). In: the architecture
``diffusers_unet2d`` builds diffusers' network for difftk's recipes, and
``train.init_from`` starts a run from a checkpoint's or an exported folder's weights
(difftk.train.init_from). diffusers itself is an optional dependency (``difftk[interop]``)
imported only where a command needs it.
"""
