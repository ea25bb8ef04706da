"""Structured pruning of torchvision detectors (Faster / Mask / Keypoint R-CNN, RetinaNet,
FCOS, SSD, SSDlite).

:func:`prunekit.prune` traces a detector like any model (the coupling rules for RoI
pooling, prediction heads and frozen norms live in :mod:`prunekit.graph.rules_detection`).
What it cannot control is how many boxes a detector returns: that number depends on the
weights, so after pruning it may change, and the check that the pruned model keeps its
output shapes fails. :func:`prune_detector` runs the same pruning with every candidate box
kept (score thresholds off, NMS keeping overlaps): each image then returns exactly
``detections_per_img`` boxes before and after, and the mask and keypoint heads see boxes
while the model is traced. The pruned model gets the original settings back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .api import prune
from .errors import ExampleInputError, UnsupportedModelError
from .result import PruneResult, model_of
from .specs import Spec
from .targets import IgnoreEntry

DETECTORS = ("GeneralizedRCNN", "RetinaNet", "FCOS", "SSD")
KEEP_ALL = {"score_thresh": float("-inf"), "nms_thresh": 1.0}
PROPOSALS = "proposals_testing"  # key of the RPN's number of proposals in settings()
PROPOSALS_PER_BOX = 4  # proposals kept per box returned: a few degenerate boxes are dropped


def is_detector(model: nn.Module) -> bool:
    """True for torchvision's detection models (and subclasses)."""
    return any(base.__name__ in DETECTORS and base.__module__.startswith("torchvision.")
               for base in type(model).__mro__)


def _threshold_holders(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(module, attr) for module in model.modules() for attr in KEEP_ALL
            if type(module).__module__.startswith("torchvision.")
            and isinstance(getattr(module, attr, None), float)]


def _proposal_caps(model: nn.Module) -> list[tuple[nn.Module, dict[str, int]]]:
    """Region proposal networks and their ``{"training": n, "testing": n}`` proposal counts."""
    return [(module, caps) for module in model.modules()
            if isinstance(caps := getattr(module, "_post_nms_top_n", None), dict)
            and isinstance(caps.get("testing"), int)]


def settings(model: nn.Module) -> dict[str, float]:
    """What :func:`every_candidate` changes: every score and NMS threshold of a detector and
    the number of proposals of its RPN, as ``{"<module>.<attribute>": value}``."""
    names = {id(m): n for n, m in model.named_modules()}
    found = {f"{names[id(m)]}.{attr}".lstrip("."): float(getattr(m, attr))
             for m, attr in _threshold_holders(model)}
    for module, caps in _proposal_caps(model):
        found[f"{names[id(module)]}.{PROPOSALS}".lstrip(".")] = float(caps["testing"])
    return found


def restore(model: nn.Module, values: Mapping[str, float]) -> None:
    """Set the values :func:`settings` returned (on the same model or a pruned copy)."""
    for key, value in values.items():
        module_name, _, attr = key.rpartition(".")
        module = model.get_submodule(module_name)
        if attr == PROPOSALS:
            caps: dict[str, int] = getattr(module, "_post_nms_top_n")  # noqa: B009
            caps["testing"] = int(value)
        else:
            setattr(module, attr, value)


def _keep_all(model: nn.Module) -> None:
    for module, attr in _threshold_holders(model):
        setattr(module, attr, KEEP_ALL[attr])
    boxes = getattr(getattr(model, "roi_heads", None), "detections_per_img", None)
    if isinstance(boxes, int):
        for _, caps in _proposal_caps(model):
            caps["testing"] = min(caps["testing"], PROPOSALS_PER_BOX * boxes)


@contextlib.contextmanager
def every_candidate(model: nn.Module) -> Iterator[None]:
    """Inside the block, ``model`` keeps every candidate box (no score threshold, NMS keeps
    overlapping boxes), so each image returns ``detections_per_img`` boxes whatever the
    weights; a two-stage detector's RPN proposes at most four times that many boxes (every
    class of each is a candidate), which keeps the post-processing small. Restored on exit."""
    saved = settings(model)
    _keep_all(model)
    try:
        yield
    finally:
        restore(model, saved)


def _check_images(images: Any) -> list[torch.Tensor]:
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        images = list(images)
    if isinstance(images, torch.Tensor) or not isinstance(images, Sequence) or not images:
        raise ExampleInputError(
            f"images must be a non-empty list of (C, H, W) tensors, got {type(images).__name__}",
            "pass e.g. [torch.rand(3, 128, 128)]",
        )
    for i, image in enumerate(images):
        if not isinstance(image, torch.Tensor) or image.dim() != 3 or not (
                image.is_floating_point()):
            what = (f"a {image.dim()}-d {image.dtype} tensor" if isinstance(image, torch.Tensor)
                    else type(image).__name__)
            raise ExampleInputError(
                f"images[{i}] is {what}; a detector takes float (C, H, W) images",
                "pass e.g. [torch.rand(3, 128, 128)]",
            )
    return list(images)


def prune_detector(
    model: nn.Module | PruneResult,
    spec: Spec,
    images: Sequence[torch.Tensor] | torch.Tensor,
    *,
    ignore: Iterable[IgnoreEntry] | IgnoreEntry = (),
    overrides: Mapping[IgnoreEntry, float] | None = None,
    calibration: Any = None,
    inplace: bool = False,
    seed: int = 0,
) -> PruneResult:
    """:func:`prunekit.prune` for a torchvision detector, with a fixed number of boxes.

    The model is traced and checked on ``images`` with every candidate box kept (see the
    module docstring); class, anchor and box widths of the heads are never pruned. The
    model is run in eval mode whatever its mode (no targets are needed).

    Args:
        model: a torchvision detection model (or a :class:`PruneResult` of one).
        spec: a :class:`~prunekit.Structured` spec (or any spec :func:`prunekit.prune` takes).
        images: the example images, a list of float ``(C, H, W)`` tensors (or a 4-d batch).
        ignore: as for :func:`prunekit.prune`.
        overrides: as for :func:`prunekit.prune`.
        calibration: batches of images for data-aware importance, each a list of images
            wrapped in a tuple (``([image],)``), as :func:`prunekit.prune` takes them.
        inplace: prune ``model`` itself.
        seed: as for :func:`prunekit.prune`.

    Returns:
        The :class:`PruneResult`; its model has the original thresholds and proposal counts.

    Raises:
        UnsupportedModelError: ``model`` is not a torchvision detector.
        ExampleInputError: ``images`` is not a list of float ``(C, H, W)`` tensors.

    Example:
        >>> import torch, prunekit as pk
        >>> from prunekit.detection import prune_detector
        >>> from torchvision.models.detection import ssdlite320_mobilenet_v3_large as ssdlite
        >>> model = ssdlite(weights=None, weights_backbone=None, num_classes=3).eval()
        >>> result = prune_detector(model, pk.Structured(sparsity=0.3), [torch.rand(3, 64, 64)])
        >>> result.summary().params_after < result.summary().params_before
        True
    """
    detector = model_of(model)
    if not is_detector(detector):
        raise UnsupportedModelError(
            f"prune_detector takes a torchvision detection model, got "
            f"{type(detector).__name__}",
            "use pk.prune for other models",
        )
    example = (_check_images(images),)
    saved = settings(detector)
    with every_candidate(detector):
        result = prune(model, spec, example, ignore=ignore, overrides=overrides,
                       calibration=calibration, inplace=inplace, seed=seed)
    restore(result.model, saved)
    return result
