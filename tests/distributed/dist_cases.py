"""What the data-parallel tests run, once under two ranks and once in one process.

Each case builds its model and data from fixed seeds, so every rank and the single
process see the same ones; under ``torch.distributed`` a case runs its own rank's share
of the training batches (calibration batches are passed whole: prunekit splits them).
Each returns plain tensors to compare.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import prunekit as pk
import prunekit.distributed as pkd
from prunekit.recover import (
    ChannelFade,
    GradualPruner,
    GradualSchedule,
    RecoveryConfig,
    distill_outputs,
    faded_channels,
    finetune,
    transplant,
)

WIDTH = 16
STEPS = 20
PER_RANK = 8  # training examples per rank and step; one process takes both ranks' at once
RANKS = 2


class Block(nn.Module):
    """A residual MLP block: what one-shot calibration walks through one at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(WIDTH, 2 * WIDTH)
        self.fc2 = nn.Linear(2 * WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.relu(self.fc1(x)))


class Stack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, WIDTH)
        self.blocks = nn.ModuleList(Block() for _ in range(3))
        self.head = nn.Linear(WIDTH, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h)


def stack(seed: int = 0) -> Stack:
    torch.manual_seed(seed)
    return Stack()


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 4))


def calibration() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(6, 8, generator=gen) for _ in range(8)]


def training() -> tuple[torch.Tensor, torch.Tensor]:
    """(STEPS, RANKS * PER_RANK, 8) inputs and their labels: the combined batches."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(STEPS, RANKS * PER_RANK, 8, generator=gen)
    return x, x[..., :4].argmax(-1)


def rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def my_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's share of every combined batch (all of it in one process)."""
    x, y = training()
    rank, world = rank_and_world()
    size = x.shape[1] // world
    part = slice(rank * size, (rank + 1) * size)
    return [(x[i, part], y[i, part]) for i in range(STEPS)]


def wrap(model: nn.Module) -> nn.Module:
    return DistributedDataParallel(model) if dist.is_initialized() else model


def _counted(model: nn.Module) -> tuple[nn.Module, list[int]]:
    calls = [0]
    model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return model, calls


def _oneshot(spec: pk.Unstructured) -> dict[str, Any]:
    model, calls = _counted(stack())
    result = pk.prune(model, spec, calibration=calibration())
    return {"masks": dict(result.plan.masks), "state": pkd.unwrap(result.model).state_dict(),
            "forward_calls": calls[0]}


def wanda() -> dict[str, Any]:
    return _oneshot(pk.Unstructured(sparsity=0.5, importance="wanda"))


def wanda_owl() -> dict[str, Any]:
    return _oneshot(pk.Unstructured(sparsity=0.5, importance="wanda", allocation="owl"))


def sparsegpt() -> dict[str, Any]:
    return _oneshot(pk.Unstructured(sparsity=0.5, importance="sparsegpt"))


def sparsegpt_dense() -> dict[str, Any]:
    return _oneshot(pk.Unstructured(sparsity=0.5, importance="sparsegpt", reconstruct="dense"))


def taylor() -> dict[str, Any]:
    batches = calibration()
    result = pk.prune(mlp(), pk.Structured(sparsity=0.5, importance="taylor"),
                      example_inputs=batches[0][:2], calibration=batches)
    kept = {f"{key}/{dim}": torch.tensor(idx) for key, dims in result.plan.kept.items()
            for dim, idx in dims.items()}
    return {"kept": kept, "state": result.model.state_dict()}


def heads() -> dict[str, Any]:
    """Heads and neurons of a tiny BERT by activation importance (statistics split)."""
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=101, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64,
                                     max_position_embeddings=64)
    model, calls = _counted(transformers.BertModel(config).eval())
    gen = torch.Generator().manual_seed(3)
    batches = [{"input_ids": torch.randint(1, 101, (2, 12), generator=gen)} for _ in range(6)]
    spec = pk.TransformerStructured(heads=0.5, neurons=0.5, importance="activation")
    result = pk.prune(model, spec, calibration=batches)
    kept = {f"{key}/{dim}": torch.tensor(idx) for key, dims in result.plan.kept.items()
            for dim, idx in dims.items()}
    return {"kept": kept, "state": result.model.state_dict(), "forward_calls": calls[0]}


def models_differ() -> dict[str, Any]:
    rank, _ = rank_and_world()
    pk.prune(stack(seed=rank), pk.Unstructured(sparsity=0.5, importance="wanda"),
             calibration=calibration())
    return {}


def _masked_mlp() -> nn.Module:
    return pk.prune(mlp(), pk.Unstructured(sparsity=0.5)).model


CONFIG = RecoveryConfig(epochs=1, lr=0.05, momentum=0.9, weight_decay=5e-4)


def finetuned() -> dict[str, Any]:
    model = wrap(_masked_mlp())  # cut (masked) before it is wrapped
    report = finetune(model, my_batches(), CONFIG, progress=False)
    return {"state": pkd.unwrap(model).state_dict(), "loss": torch.tensor(report.losses),
            "steps": torch.tensor(report.steps)}


def distilled() -> dict[str, Any]:
    teacher = mlp()  # the dense model, never wrapped
    student = wrap(_masked_mlp())
    distill_outputs(student, teacher, [x for x, _ in my_batches()], epochs=1, lr=1e-3,
                    progress=False)
    return {"state": pkd.unwrap(student).state_dict()}


def gradual() -> dict[str, Any]:
    """Masks grown during training, on the wrapped module of every rank."""
    model = wrap(mlp())
    pruner = GradualPruner(GradualSchedule(final_sparsity=0.6, end_fraction=0.5, every=4),
                           lambda s: pk.Unstructured(sparsity=s))
    finetune(model, my_batches(), CONFIG, pruner=pruner, progress=False)
    return {"state": pkd.unwrap(model).state_dict()}


def conv_bn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def faded() -> dict[str, Any]:
    """Channels faded out under DDP, then cut: BatchNorm, so the ranks agree with each other
    (not with one process on the combined batch)."""
    rank, world = rank_and_world()
    gen = torch.Generator().manual_seed(3)
    images = torch.randn(STEPS, RANKS * PER_RANK, 3, 6, 6, generator=gen)
    size = images.shape[1] // world
    part = slice(rank * size, (rank + 1) * size)
    loader = [(images[i, part], images[i, part, 0, 0, 0].gt(0).long()) for i in range(STEPS)]
    dense = conv_bn()
    one_shot = pk.prune(dense, pk.Structured(sparsity=0.5), example_inputs=images[0, :2])
    model = copy.deepcopy(dense)
    fade = ChannelFade(faded_channels(model, one_shot.plan), end_fraction=0.5)
    wrapped = wrap(model)
    finetune(wrapped, loader, CONFIG, pruner=fade, progress=False)
    fade.remove(model)
    return {"state": transplant(wrapped, one_shot).state_dict()}


def saved(folder: Path) -> dict[str, Any]:
    model = wrap(_masked_mlp())
    finetune(model, my_batches(), RecoveryConfig(max_steps=3), progress=False)
    pkd.save(model, folder / "saved", overwrite=True)
    return {"state": pkd.unwrap(model).state_dict()}


def accelerated() -> dict[str, Any]:
    """The finetune case through Hugging Face accelerate: its prepared model and loader."""
    from accelerate import Accelerator
    from torch.utils.data import DataLoader, TensorDataset

    accelerator = Accelerator(cpu=True)
    x, y = training()
    data = TensorDataset(x.reshape(-1, 8), y.reshape(-1))
    per_process = PER_RANK if accelerator.num_processes > 1 else RANKS * PER_RANK
    model, loader = accelerator.prepare(_masked_mlp(),
                                        DataLoader(data, batch_size=per_process, shuffle=False))
    finetune(model, loader, CONFIG, progress=False)
    return {"state": copy.deepcopy(accelerator.unwrap_model(model).state_dict())}


def calibration_differs() -> dict[str, Any]:
    rank, _ = rank_and_world()
    batches = calibration()
    pk.prune(stack(), pk.Unstructured(sparsity=0.5, importance="sparsegpt"),
             calibration=batches[rank:])
    return {}


def teacher_wrapped() -> dict[str, Any]:
    finetune(wrap(_masked_mlp()), my_batches(), RecoveryConfig(distill=True),
             teacher=wrap(mlp()), progress=False)
    return {}


def steps_differ() -> dict[str, Any]:
    rank, _ = rank_and_world()
    finetune(wrap(_masked_mlp()), my_batches()[rank:], CONFIG, progress=False)
    return {}


CASES: dict[str, Callable[[], dict[str, Any]]] = {
    "wanda": wanda, "wanda_owl": wanda_owl, "sparsegpt": sparsegpt,
    "sparsegpt_dense": sparsegpt_dense, "taylor": taylor, "heads": heads, "models_differ": models_differ,
    "finetune": finetuned, "distill": distilled, "accelerate": accelerated,
    "gradual": gradual, "fade": faded,
    "calibration_differs": calibration_differs, "teacher_wrapped": teacher_wrapped,
    "steps_differ": steps_differ,
}
