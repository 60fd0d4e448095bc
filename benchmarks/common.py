"""Shared helpers of the benchmark scripts. The timer and run metadata live in
``gantk.benchmarking`` so that ``gantk bench`` (installed, without this folder) uses the
very same code."""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
try:
    import gantk  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(HERE.parent))

from gantk.benchmarking import ROOT, memory_bandwidth, run_metadata, timeit  # noqa: E402,F401

#: critic steps per generator step in whole-iteration timings (the wgan-gp preset's n_critic)
N_CRITIC = 5


def iteration(critic_step, generator_step):
    """One generator iteration: ``N_CRITIC`` critic steps, then one generator step."""
    def run():
        for _ in range(N_CRITIC):
            critic_step()
        generator_step()
    return run
