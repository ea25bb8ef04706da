"""Depth pruning end to end: find the removable blocks, choose, replace them by
``nn.Identity``, then (``channels=``) prune the channels of what remains; and replaying a
depth plan on another copy of the architecture.

Everything about the blocks is checked before the model is touched: the spec's arguments,
the example inputs (they must run), every named block, the block count. The channel step
runs on the changed copy (or, in place, under the skeleton's snapshot), so a failure there
leaves the caller's model as it was.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from ..errors import ExampleInputError, InternalError, PlanError, TargetError
from ..inputs import ExampleInputs, run_example
from ..oneshot.calibration import check_calibration
from ..pipeline import Request, run
from ..pipeline.verify import check_still_runs
from ..plan import Plan
from ..result import PruneResult
from ..specs import CALIBRATED_IMPORTANCE, Depth, Structured
from ..structured import StructuredPipeline, refuse_masked
from ..summary import count_parameters
from ..targets import IgnoreEntry, check_ignore
from .blocks import block_reason, check_named, find_blocks
from .influence import Selection, select_blocks
from .result import DepthResult

log = logging.getLogger(__name__)


def _channels_use_data(spec: Structured | None) -> bool:
    return spec is not None and (spec.importance in CALIBRATED_IMPORTANCE or
                                 spec.target is not None)


def _uses(spec: Depth) -> tuple[str, ...]:
    """The optional arguments of :class:`Request` that ``spec`` reads."""
    used = ("calibration",) if spec.measured or _channels_use_data(spec.channels) else ()
    return used + (("overrides",) if spec.channels is not None else ())


def _method(spec: Depth) -> str:
    """How the method is named when an unused argument is refused."""
    how = "names=" if spec.names else f"selection={spec.selection!r}"
    more = " and channels=" if spec.channels is not None else ""
    return f"depth pruning with {how}{more}"


def replace_blocks(model: nn.Module, names: list[str]) -> None:
    """Put an ``nn.Identity`` where each named block was."""
    for name in names:
        model.set_submodule(name, nn.Identity())


def _forward_order(model: nn.Module, names: list[str]) -> list[str]:
    order = [n for n, _ in model.named_modules()]
    return sorted(names, key=order.index)


def _outside(entries: list[IgnoreEntry], removed: list[str]) -> list[IgnoreEntry]:
    """Ignore entries, less the names of modules that went with a removed block."""
    return [e for e in entries if not isinstance(e, str) or not any(
        e == r or e.startswith(r + ".") for r in removed)]


class DepthPipeline:
    """Remove whole residual blocks (see :class:`prunekit.specs.Depth`).

    Args:
        spec: the :class:`Depth` spec.
        request: example inputs (required: they find the blocks and check the result),
            calibration batches (to measure influence; the example inputs when none are
            given), ignore list (blocks holding an ignored module stay), and for the
            ``channels=`` step its overrides.
    """

    name = "depth pruning"

    def __init__(self, spec: Depth, request: Request) -> None:
        self.spec = spec
        self.request = request

    def _calibration(self) -> list[Any] | None:
        if not self.spec.measured:
            return None
        if self.request.calibration is None:
            log.warning("depth pruning measures block influence on the example inputs only; "
                        "pass calibration=[batch, ...] of real inputs for a better choice")
            return [self.example_inputs]
        return check_calibration(self.request.calibration, "choosing blocks by influence")

    def prepare(self, model: nn.Module) -> None:
        spec, request = self.spec, self.request
        request.refuse_unused(_uses(spec), _method(spec))
        if request.example_inputs is None:
            raise ExampleInputError(
                "depth pruning needs example_inputs: the blocks are found by running them",
                "pass example_inputs=torch.randn(1, 3, 224, 224) or whatever the model accepts",
            )
        self.example_inputs: ExampleInputs = request.example_inputs
        refuse_masked(model, self.name)
        self.entries = check_ignore(model, request.ignore)
        self.outputs_before = run_example(model, self.example_inputs)
        candidates = find_blocks(model, self.example_inputs, self.entries)
        if spec.names:
            self.selection = Selection(check_named(model, spec.names, candidates))
        else:
            if spec.blocks > len(candidates.names):
                raise TargetError(
                    f"blocks={spec.blocks}, but the model has {len(candidates.names)} "
                    f"removable residual blocks ({', '.join(candidates.names) or 'none'})",
                    f"ask for at most {len(candidates.names)} blocks (a block is removable "
                    "when its output is its input plus a branch, with the same shape, "
                    "inside an nn.Sequential)",
                )
            self.selection = select_blocks(model, candidates.names, spec.blocks,
                                           spec.selection, self._calibration())
        self.removed = _forward_order(model, self.selection.removed)
        self.params_before = count_parameters(model)

    def writes(self) -> list[str]:
        return []  # blocks are replaced; no tensor is written

    def mutate(self, work: nn.Module) -> None:
        replace_blocks(work, self.removed)
        self.channel_result: PruneResult | None = None
        if self.spec.channels is not None:
            channels = self.spec.channels
            request = Request(
                self.example_inputs, tuple(_outside(self.entries, self.removed)),
                self.request.overrides, False,
                self.request.calibration if _channels_use_data(channels) else None,
                self.request.seed,
            )
            self.channel_result = run(StructuredPipeline(channels, request), work, inplace=True)

    def verify(self, work: nn.Module) -> None:
        check_still_runs(work, self.example_inputs, self.outputs_before, self.name)
        kept = [n for n in self.removed if not isinstance(work.get_submodule(n), nn.Identity)]
        if kept:
            raise InternalError(f"depth pruning left {kept} in place")

    def _calibration_note(self) -> str:
        if not self.spec.measured:
            return ""
        batches = "the example inputs" if self.request.calibration is None else (
            "the calibration batches")
        return (f"blocks chosen {self.spec.selection} by the relative change of the outputs "
                f"on {batches}")

    def result(self, work: nn.Module) -> DepthResult:
        shapes = {k: list(t.shape) for k, t in work.state_dict().items()}
        channel = self.channel_result
        plan = Plan(
            spec=self.spec.to_dict(), shapes=shapes, removed_modules=list(self.removed),
            calibration=self._calibration_note(),
        )
        if channel is not None:
            plan.kept, plan.attributes = channel.plan.kept, channel.plan.attributes
            plan.skipped, plan.notes = channel.plan.skipped, channel.plan.notes
        log.info("depth pruning removed %d blocks: %s", len(self.removed),
                 ", ".join(self.removed))
        selection = self.selection
        return DepthResult(
            work, plan, self.spec, channel.layers_before if channel is not None else {},
            self.params_before, removed=list(selection.removed),
            influence=dict(selection.influence), change=selection.change, channels=channel,
        )


class ReplayDepthPlan:
    """Replace the blocks a depth plan removed by ``nn.Identity`` in another copy of the
    architecture (:func:`prunekit.apply_plan`)."""

    name = "apply_plan"

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def prepare(self, model: nn.Module) -> None:
        plan = self.plan
        if plan.kept or plan.attributes or plan.masks:
            raise PlanError(
                "apply_plan replays the removed blocks of a depth plan; this one also changed "
                "channels (new shapes, whose values come from the pruned weights)",
                "load the saved result with pk.load(path)",
            )
        modules = dict(model.named_modules())
        problems = []
        for name in plan.removed_modules:
            reason = "no such module" if name not in modules else block_reason(model, name)
            if reason is not None:
                problems.append(f"{name!r}: {reason}")
        if problems:
            raise PlanError(
                "the plan does not fit the model: " + "; ".join(problems),
                "replay a plan on the architecture it was made on",
            )

    def writes(self) -> list[str]:
        return []

    def mutate(self, work: nn.Module) -> None:
        replace_blocks(work, list(self.plan.removed_modules))

    def verify(self, work: nn.Module) -> None:
        for name in self.plan.removed_modules:
            if not isinstance(work.get_submodule(name), nn.Identity):
                raise InternalError(f"apply_plan: {name} was not replaced")

    def result(self, work: nn.Module) -> nn.Module:
        return work


def is_depth_plan(plan: Plan) -> bool:
    """True if ``plan`` was made by :class:`Depth` pruning."""
    return plan.spec.get("kind") == "depth"


def replay(model: nn.Module, plan: Plan, *, inplace: bool) -> nn.Module:
    """Run :class:`ReplayDepthPlan` through the common skeleton."""
    return run(ReplayDepthPlan(plan), model, inplace=inplace)
