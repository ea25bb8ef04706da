"""prunekit: prune PyTorch models, really smaller and measurably faster.

Example:
    >>> import prunekit as pk, torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> result = pk.prune(model, pk.Unstructured(sparsity=0.5, scope="global"))
    >>> round(result.summary().sparsity, 2)
    0.5
"""

from . import zoo
from ._version import __version__
from .api import apply_plan, prune
from .apply.masks import finalize
from .budget import Latency as Latency
from .budget import MACs as MACs
from .budget import Params as Params
from .budget.sensitivity import sensitivity as sensitivity
from .errors import (
    ArtifactExistsError,
    CalibrationError,
    CouplingError,
    DataError,
    ExampleInputError,
    FormatError,
    InternalError,
    MissingDependencyError,
    PlanError,
    PrunekitError,
    PruningBrokeModelError,
    ShapeError,
    SpecError,
    TargetError,
    UnsupportedModelError,
    WeightError,
)
from .io import artifact_bytes, export_onnx, load, save
from .plan import Plan
from .result import PruneResult
from .sparse import SparseConversion, to_sparse
from .specs import NM, Depth, Structured, TransformerStructured, Unstructured, spec_from_dict
from .summary import Summary

__all__ = [
    "__version__",
    "prune",
    "apply_plan",
    "finalize",
    "Unstructured",
    "NM",
    "Structured",
    "TransformerStructured",
    "Depth",
    "spec_from_dict",
    "Plan",
    "PruneResult",
    "Summary",
    "zoo",
    "save",
    "load",
    "export_onnx",
    "artifact_bytes",
    "to_sparse",
    "SparseConversion",
    "PrunekitError",
    "InternalError",
    "PruningBrokeModelError",
    "SpecError",
    "TargetError",
    "ShapeError",
    "WeightError",
    "ExampleInputError",
    "UnsupportedModelError",
    "CouplingError",
    "PlanError",
    "CalibrationError",
    "FormatError",
    "ArtifactExistsError",
    "DataError",
    "MissingDependencyError",
]
