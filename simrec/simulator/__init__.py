"""The simulator: the Mesa model, the Parquet recorder and the runner."""

from simrec.simulator.model import SimulationModel
from simrec.simulator.runner import RunResult, run

__all__ = ["RunResult", "SimulationModel", "run"]
