"""The one skeleton every model-changing call runs through (see :mod:`.skeleton`)."""

from .request import Request
from .skeleton import Pipeline, copy_model, run
from .snapshot import ModelSnapshot

__all__ = ["ModelSnapshot", "Pipeline", "Request", "copy_model", "run"]
