"""Training: the :class:`Trainer` (steps and loop, :mod:`.trainer`), building a run's
parts (:mod:`.build`), the generator's weight average (:mod:`.ema`), metric
accumulation (:mod:`.accumulate`), resume and its rules (:mod:`.resume`), the run
folder (:mod:`.rundir`), callbacks (:mod:`.callbacks`) and several processes
(:mod:`.distributed`)."""
from .build import Components, build_components, has_batchnorm, make_optimizer, resolve_device
from .callbacks import Callback, TrainResult
from .resume import resume, resume_config
from .trainer import Trainer, train

__all__ = [
    "Callback", "Components", "TrainResult", "Trainer", "build_components", "has_batchnorm", "make_optimizer",
    "resolve_device", "resume", "resume_config", "train",
]
