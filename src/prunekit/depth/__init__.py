"""Depth pruning: remove whole residual blocks (see :class:`prunekit.specs.Depth`)."""

from .blocks import Candidates, find_blocks
from .influence import Selection, output_change, select_blocks
from .result import DepthResult

__all__ = ["Candidates", "DepthResult", "Selection", "find_blocks", "output_change",
           "select_blocks"]
