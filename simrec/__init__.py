"""simrec: simulated users for recommender systems.

>>> import simrec
>>> simrec.RunConfig().simulation.page_size
10
"""

from simrec.config import RunConfig, load_config
from simrec.conversation import converse
from simrec.errors import ConfigError, InputError, SimrecError
from simrec.evaluation.ab import ab
from simrec.simulator.runner import RunResult, run
from simrec.version import __version__

__all__ = [
    "ConfigError",
    "InputError",
    "RunConfig",
    "RunResult",
    "SimrecError",
    "__version__",
    "ab",
    "converse",
    "load_config",
    "run",
]
