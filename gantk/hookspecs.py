"""Hook specifications: the whole contract between gantk and its plugins.

Every hook here is a *collection* hook: gantk calls it once per plugin, passing a
``register`` callback built by the host, and the plugin calls ``register(Class)``
for each component it provides. The class's ``name`` attribute is the name users
type on the command line. Built-in components are registered through these very
hooks (see ``gantk/default_plugins``).
"""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("gantk")


@hookspec
def register_models(register):
    """Register GAN model families (generator + critic builders).

    Called once per plugin when gantk first needs its registry (the CLI at start-up,
    ``gantk.create_model``). ``register(cls)`` takes a subclass of
    :class:`gantk.GANModel` with a unique ``name``. The return value is ignored.
    """


@hookspec
def register_losses(register):
    """Register adversarial losses.

    Called once per plugin when the registry is built. ``register(cls)`` takes a
    subclass of :class:`gantk.Loss` with a unique ``name``. The return value is ignored.
    """


@hookspec
def register_lipschitz(register):
    """Register Lipschitz enforcers (weight clipping, gradient penalties, spectral norm...).

    Called once per plugin when the registry is built. ``register(cls)`` takes a
    subclass of :class:`gantk.LipschitzEnforcer` with a unique ``name``. The return
    value is ignored.
    """


@hookspec
def register_datasets(register):
    """Register data sets (generated toy sets, bundled sets, file and folder readers).

    Called once per plugin when the registry is built. ``register(cls)`` takes a
    subclass of :class:`gantk.Dataset` with a unique ``name``. A dataset that can
    open paths overrides ``Dataset.can_open(path)``, so ``--data some/file`` finds
    it. The return value is ignored.
    """


@hookspec
def register_protocols(register):
    """Register evaluation protocols (what ``gantk eval`` and ``--eval-every`` compute).

    Called once per plugin when the registry is built. ``register(cls)`` takes a
    subclass of :class:`gantk.Protocol` with a unique ``name``. A data set chooses its
    protocol by name (``Dataset.protocol``); a protocol whose ``accepts(data_shape)``
    is true scores data whose set names none. The return value is ignored.
    """


@hookspec
def register_loggers(register):
    """Register training loggers (``gantk train --logger NAME``).

    Called once per plugin when the registry is built. ``register(cls)`` takes a
    subclass of :class:`gantk.Logger` with a unique ``name``. The return value is
    ignored.
    """


@hookspec
def register_commands(cli):
    """Add ``gantk`` subcommands.

    Called once per plugin when the command line starts, with ``cli``, the Typer app of
    ``gantk``: add commands with ``@cli.command()`` (or ``cli.add_typer``). A plugin
    whose hook raises is reported and skipped; the other commands keep working. The
    return value is ignored.
    """


@hookspec
def register_feature_extractors(register):
    """Register image feature extractors (the networks FID, KID and precision/recall are
    computed on: ``gantk eval --features NAME``).

    Called once per plugin when the registry is built. ``register(cls)`` takes a
    subclass of :class:`gantk.FeatureExtractor` with a unique ``name``. Loading its
    weights happens later, in ``FeatureExtractor.load``, only when it is used. The
    return value is ignored.
    """


@hookspec
def register_augmentations(register):
    """Register augmentations (``gantk train --augment NAME[,NAME]``).

    Called once per plugin when the registry is built. ``register(cls)`` takes a
    subclass of :class:`gantk.Augmentation` with a unique ``name``. Its ``stage`` says
    whether the trainer applies it to real batches as they are drawn (``"data"``) or to
    real and generated batches before every critic call (``"critic"``); after each
    critic step its ``observe`` sees the critic's outputs, so an adaptive probability
    (ADA) lives in the plugin. The return value is ignored.
    """
