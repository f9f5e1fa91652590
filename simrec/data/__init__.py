"""Data: catalogs, interaction logs, loaders, the synthetic world, output schemas."""

from simrec.data.dataset import Catalog, Dataset, Interactions, RatingScale
from simrec.data.loaders import FORMATS, load
from simrec.data.synthetic import make_world

__all__ = ["FORMATS", "Catalog", "Dataset", "Interactions", "RatingScale", "load", "make_world"]
