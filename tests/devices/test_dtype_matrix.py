"""Every pipeline with the model in bf16 and fp16, on the CPU and (where present) on CUDA.

What a user relies on, per pipeline: every parameter and buffer keeps the model's dtype
and device, outputs have the right shapes and are finite, masks and sparsity are what was
asked, save -> load reproduces outputs exactly, and the low-precision result agrees with
the same computation in fp32 (tolerances stated at each check, with the reason).
"""

from __future__ import annotations

import copy

import pytest
import torch
from device_cases import (
    DEVICES,
    LOW_DTYPES,
    assert_finite_output,
    assert_placed,
    floats_to,
    needs_cuda,
    on,
    outputs,
    overlap,
    tiny_bert,
    tiny_llama,
    tokens,
    torch_kernels,
)
from torch import nn

import prunekit as pk
from prunekit.apply.masks import effective_weight
from prunekit.compare.measuring import count_row
from prunekit.data import TensorLoader
from prunekit.measure import evaluate_accuracy, peak_inference_memory, time_models
from prunekit.recover import RecoveryConfig, RecoveryStep, distill_outputs, finetune
from prunekit.select.unstructured import removal_count

# Tolerances, and why:
# - a mask chosen from bf16 / fp16 weights differs from the fp32 one only where rounding
#   reorders nearly equal scores; magnitude ranks the rounded weights themselves (>= 98%
#   agree), the one-shot methods add rounded activations (>= 95%, the spec's floor);
# - sparse kernels sum in another order than dense ones: 2 rounding steps of the dtype.
MAGNITUDE_OVERLAP = 0.98
ONESHOT_OVERLAP = 0.95
SPARSE_ATOL = {torch.bfloat16: 2 ** -6, torch.float16: 2 ** -9}


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=LOW_DTYPES)
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return request.param


def _mlp() -> tuple[nn.Module, torch.Tensor]:
    return pk.zoo.build("mlp"), pk.zoo.example_inputs("mlp", 4)


def _masked_effective(model: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{n}.weight": effective_weight(m) for n, m in model.named_modules()
            if hasattr(m, "weight_mask")}


# --- masked unstructured and N:M -------------------------------------------------------


def test_unstructured_masks_are_exact_and_match_fp32(device, dtype):
    model, x = _mlp()
    reference = pk.prune(model, pk.Unstructured(sparsity=0.5)).plan.masks
    with torch_kernels(device, dtype):
        result = pk.prune(on(model, device, dtype), pk.Unstructured(sparsity=0.5))
        assert_placed(result.model, device, dtype)
        assert_finite_output(result.model, floats_to(x, device, dtype), (4, 10), device, dtype)
        for key, mask in result.plan.masks.items():
            assert mask.numel() - int(mask.sum()) == removal_count(mask.numel(), 0.5), key
            assert overlap(mask, reference[key]) >= MAGNITUDE_OVERLAP, key
        for key, weight in _masked_effective(result.model).items():
            assert bool((weight[~result.plan.masks[key].to(device)] == 0).all()), key
        assert_placed(pk.finalize(result.model), device, dtype)


def test_nm_keeps_two_of_every_four(device, dtype):
    model, x = _mlp()
    reference = pk.prune(model, pk.NM(2, 4)).plan.masks
    with torch_kernels(device, dtype):
        result = pk.prune(on(model, device, dtype), pk.NM(2, 4))
        assert_placed(result.model, device, dtype)
        assert_finite_output(result.model, floats_to(x, device, dtype), (4, 10), device, dtype)
        for key, mask in result.plan.masks.items():
            assert bool((mask.reshape(-1, 4).sum(dim=1) == 2).all()), key
            assert overlap(mask, reference[key]) >= MAGNITUDE_OVERLAP, key


# --- one-shot: Wanda and SparseGPT ----------------------------------------------------


@pytest.mark.parametrize("spec", [
    pk.Unstructured(sparsity=0.5, importance="wanda"),
    pk.Unstructured(sparsity=0.5, importance="sparsegpt", bias_correction=True),
    pk.NM(2, 4, importance="sparsegpt"),
], ids=["wanda", "sparsegpt-bias", "sparsegpt-2:4"])
def test_oneshot_mask_agrees_with_the_fp32_one(device, dtype, spec):
    model, x = _mlp()
    gen = torch.Generator().manual_seed(1)
    calibration = [torch.randn(32, 1, 28, 28, generator=gen) for _ in range(2)]
    reference = pk.prune(model, spec, calibration=calibration).plan.masks
    with torch_kernels(device, dtype):
        result = pk.prune(on(model, device, dtype), spec,
                          calibration=floats_to(calibration, device, dtype))
        assert_placed(result.model, device, dtype)
        assert_finite_output(result.model, floats_to(x, device, dtype), (4, 10), device, dtype)
    for key, mask in result.plan.masks.items():
        assert mask.device.type == "cpu"  # plans hold their masks on the CPU
        assert mask.numel() - int(mask.sum()) == mask.numel() // 2, key
        assert overlap(mask, reference[key]) >= ONESHOT_OVERLAP, key


def test_sparsegpt_towards_the_dense_model_on_a_transformer(device, dtype):
    model = tiny_bert()
    calibration = [tokens(0), tokens(1)]
    spec = pk.Unstructured(sparsity=0.5, importance="sparsegpt", reconstruct="dense",
                           bias_correction=True)
    reference = pk.prune(model, spec, calibration=calibration).plan.masks
    with torch_kernels(device, dtype):
        result = pk.prune(on(model, device, dtype), spec,
                          calibration=floats_to(calibration, device, dtype))
        assert_placed(result.model, device, dtype)
        assert_finite_output(result.model, floats_to(tokens(2), device, dtype), (4, 12, 32),
                             device, dtype)
    assert sorted(result.plan.masks) == sorted(reference)
    for key, mask in result.plan.masks.items():
        assert overlap(mask, reference[key]) >= ONESHOT_OVERLAP, key


# --- structured ------------------------------------------------------------------------


def _kept_fraction(kept: dict, reference: dict) -> float:
    """Fraction of the reference's kept channels that ``kept`` keeps too."""
    pairs = [(set(kept[k][d]), set(v)) for k, dims in reference.items() for d, v in dims.items()]
    return sum(len(a & b) for a, b in pairs) / sum(len(b) for _, b in pairs)


@pytest.mark.parametrize("importance", ["l1", "l2", "taylor"])
def test_structured_cnn_keeps_dtype_and_device(device, dtype, importance):
    model, x = pk.zoo.build("resnet"), pk.zoo.example_inputs("resnet", 2)
    spec = pk.Structured(sparsity=0.5, importance=importance)
    reference = pk.prune(model, spec, x).plan.kept
    with torch_kernels(device, dtype):
        result = pk.prune(on(model, device, dtype), spec, floats_to(x, device, dtype))
        assert_placed(result.model, device, dtype)
        assert_finite_output(result.model, floats_to(x, device, dtype), (2, 10), device, dtype)
    if importance == "taylor":  # gradients of a low-precision forward pass: near ties move
        assert _kept_fraction(result.plan.kept, reference) >= 0.98
    else:
        # Filter norms are reduced in float32, and no two channels of this seeded model are
        # within the weights' rounding of each other: the fp32 choice, exactly. (Norms
        # rounded to bf16 tie and reorder: 6 of 46 tensors differed with l1, 16 with l2.)
        assert result.plan.kept == reference


@pytest.mark.parametrize("importance", ["activation", "taylor"])
def test_transformer_structured_llama(device, dtype, importance):
    model = tiny_llama()
    calibration = [tokens(0, labels=True), tokens(1, labels=True)]
    spec = pk.TransformerStructured(heads=0.25, neurons=0.25, layers=1, importance=importance)
    reference = pk.prune(model, spec, calibration=calibration).plan
    with torch_kernels(device, dtype):
        result = pk.prune(on(model, device, dtype), spec,
                          calibration=floats_to(calibration, device, dtype))
        assert_placed(result.model, device, dtype)
        out = assert_finite_output(result.model, floats_to(tokens(2), device, dtype),
                                   (4, 12, 101), device, dtype)
    assert out.shape[-1] == 101
    assert result.plan.removed_modules == reference.removed_modules
    assert result.model.config.num_hidden_layers == 1
    assert {k: {d: len(i) for d, i in v.items()} for k, v in result.plan.kept.items()} == {
        k: {d: len(i) for d, i in v.items()} for k, v in reference.kept.items()}


def test_taylor_gradients_sum_in_float64_and_leave_the_model_as_it_was(device, dtype):
    from prunekit.importance.channel import output_energy_gradients

    torch.manual_seed(0)
    reference = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    batches = [torch.randn(4, 16) for _ in range(3)]
    expected = output_energy_gradients(reference, batches)
    with torch_kernels(device, dtype):
        model = on(reference, device, dtype)
        model[0].weight.requires_grad_(False)  # frozen by the user: scored all the same
        grads = output_energy_gradients(model, floats_to(batches, device, dtype))
    assert sorted(grads) == sorted(expected)
    for name, grad in grads.items():
        assert grad.dtype == torch.float64 and grad.device.type == device
        torch.testing.assert_close(grad.cpu(), expected[name], rtol=0.05, atol=0.02)
    assert not model[0].weight.requires_grad and model[2].weight.grad is None  # untouched


# --- sparse-stored ---------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["csr", "auto"])
def test_to_sparse_matches_the_masked_model(device, dtype, kernel):
    model, x = _mlp()
    with torch_kernels(device, dtype):
        masked = pk.prune(on(model, device, dtype), pk.Unstructured(sparsity=0.9))
        xs = floats_to(x, device, dtype)
        conversion = pk.to_sparse(masked, xs, kernel=kernel)
        assert_placed(conversion.model, device, dtype)
        got = assert_finite_output(conversion.model, xs, (4, 10), device, dtype)
    expected = outputs(masked.model, xs)
    torch.testing.assert_close(got, expected, rtol=0, atol=SPARSE_ATOL[dtype] * 8)
    if kernel == "csr":
        assert set(conversion.kernels.values()) == {"csr"}


# --- save / load ------------------------------------------------------------------------


def _state(kind: str, device: str, dtype: torch.dtype):
    """(what to save, a factory building the original architecture there, inputs)."""
    name = "resnet" if kind == "structured" else "mlp"

    def build() -> nn.Module:
        return pk.zoo.build(name).to(device=device, dtype=dtype)

    x = floats_to(pk.zoo.example_inputs(name, 4), device, dtype)
    if kind == "dense":
        return build(), build, x
    if kind == "structured":
        return pk.prune(build(), pk.Structured(sparsity=0.5), x), build, x
    masked = pk.prune(build(), pk.Unstructured(sparsity=0.9), x)
    if kind == "masked":
        return masked, build, x
    if kind == "finalized":
        return pk.finalize(masked.model), build, x
    return pk.to_sparse(masked, x, kernel="csr"), build, x


@pytest.mark.parametrize("kind", ["dense", "masked", "finalized", "sparse", "structured"])
def test_save_load_reproduces_outputs_exactly(device, dtype, kind, tmp_path):
    with torch_kernels(device, dtype):
        saved, build, x = _state(kind, device, dtype)
        model = saved if isinstance(saved, nn.Module) else saved.model
        folder = pk.save(saved, tmp_path / kind)
        loaded = pk.load(folder, build=build)
        assert_placed(loaded, device, dtype)
        assert torch.equal(outputs(loaded, x), outputs(model, x))
        assert sorted(loaded.state_dict()) == sorted(model.state_dict())


# --- recovery -------------------------------------------------------------------------


def _toy(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 16, generator=gen)
    y = x.view(256, 4, 4).sum(-1).argmax(-1)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(16, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 4))
    return net, x, y


def _recover(model: nn.Module, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor,
             how: str) -> list[float]:
    loader = TensorLoader(x, y, 32, shuffle=True, seed=0)
    config = RecoveryConfig(epochs=3, lr=0.05, distill=True, bn_recalibration_batches=2)
    if how == "finetune":
        return finetune(model, loader, config, teacher=teacher, progress=False).losses
    if how == "step":
        step = RecoveryStep(model, config, total_steps=3 * len(loader), teacher=teacher)
        losses = []
        for _ in range(3):
            epoch = [step(inputs, labels) for inputs, labels in loader]
            losses.append(sum(epoch) / len(epoch))
        return losses
    batches = [x[i:i + 32] for i in range(0, 256, 32)]
    return distill_outputs(model, teacher, batches, epochs=3, lr=3e-3, progress=False).losses


@pytest.mark.parametrize("how", ["finetune", "step", "distill"])
def test_recovery_trains_in_low_precision_like_fp32(device, dtype, how):
    dense, x, y = _toy()
    finetune(dense, TensorLoader(x, y, 32), RecoveryConfig(epochs=2, lr=0.1), progress=False)
    pruned = pk.prune(dense, pk.Unstructured(sparsity=0.7)).model
    reference = _recover(copy.deepcopy(pruned), dense, x, y, how)
    with torch_kernels(device, dtype):
        model, teacher = on(pruned, device, dtype), on(dense, device, dtype)
        losses = _recover(model, teacher, floats_to(x, device, dtype), y.to(device), how)
        assert_placed(model, device, dtype)
        assert_finite_output(model, floats_to(x[:8], device, dtype), (8, 4), device, dtype)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]  # it learns
    # float32 master weights and losses: the run follows the fp32 one up to the rounding of
    # the model's own arithmetic (a bf16 optimiser alone would lose most late updates)
    assert losses[-1] == pytest.approx(reference[-1], rel=0.25, abs=0.02)
    for key, weight in _masked_effective(model).items():
        mask = model.get_submodule(key.rpartition(".")[0]).weight_mask
        assert bool((weight[~mask] == 0).all()), key


def _change(before: nn.Module, after: nn.Module) -> torch.Tensor:
    return torch.cat([(b.detach().float() - a.detach().float()).flatten()
                      for a, b in zip(before.parameters(), after.parameters(), strict=True)])


@pytest.mark.parametrize("how", ["finetune", "distill"])
def test_small_updates_are_not_lost_in_low_precision(device, dtype, how):
    # At a small learning rate each update is far below a bf16 weight's rounding step:
    # written into the weights directly, most vanish (the change came out 0.4x the fp32
    # one, pointing elsewhere: cosine 0.4-0.6). float32 master weights keep them: the
    # low-precision run changes the weights as the fp32 run does, up to the noise of its
    # own forward passes.
    dense, x, y = _toy()
    finetune(dense, TensorLoader(x, y, 32), RecoveryConfig(epochs=2, lr=0.1), progress=False)
    pruned = pk.prune(dense, pk.Unstructured(sparsity=0.7)).model

    def run(model: nn.Module, teacher: nn.Module, xs: torch.Tensor) -> None:
        if how == "finetune":
            finetune(model, TensorLoader(xs, y.to(xs.device), 32),
                     RecoveryConfig(epochs=2, lr=2e-3), progress=False)
        else:
            distill_outputs(model, teacher, [xs[i:i + 32] for i in range(0, 256, 32)],
                            epochs=2, lr=1e-4, progress=False)

    reference = copy.deepcopy(pruned)
    run(reference, dense, x)
    with torch_kernels(device, dtype):
        model = on(pruned, device, dtype)
        start = copy.deepcopy(model)
        run(model, on(dense, device, dtype), floats_to(x, device, dtype))
    change, expected = _change(start, model).cpu(), _change(pruned, reference)
    assert 0.8 <= float(change.norm() / expected.norm()) <= 1.25
    assert float(torch.nn.functional.cosine_similarity(change, expected, dim=0)) >= 0.75


# --- measuring -------------------------------------------------------------------------


def test_measuring_helpers(device, dtype):
    dense, x, y = _toy()
    masked = pk.prune(dense, pk.Unstructured(sparsity=0.5)).model.eval()
    reference = count_row(masked, x[:2])
    with torch_kernels(device, dtype):
        model = on(masked, device, dtype)
        xs = floats_to(x, device, dtype)
        assert count_row(model, xs[:2]) == reference  # counts do not depend on the dtype
        accuracy = evaluate_accuracy(model, TensorLoader(xs, y, 64))  # labels stay on the CPU
        assert accuracy == pytest.approx(evaluate_accuracy(masked, TensorLoader(x, y, 64)),
                                         abs=0.05)  # a few near-ties may flip
        memory = peak_inference_memory(model, xs[:8], device=device)
        assert memory["weights_bytes"] == sum(
            t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
        stats = time_models({"m": model}, xs[:8], warmup=1, rounds=2, calls_per_round=1,
                            device=device)["m"]
        assert stats.samples == 2 and stats.median_ms > 0 and stats.device.startswith(device)
        assert_placed(model, device, dtype)  # measuring copies; the model is untouched


# --- fp32 on CUDA against the CPU --------------------------------------------------------


@needs_cuda
def test_cuda_fp32_agrees_with_the_cpu(tmp_path):
    model, x = _mlp()
    gen = torch.Generator().manual_seed(1)
    calibration = [torch.randn(32, 1, 28, 28, generator=gen) for _ in range(2)]
    spec = pk.Unstructured(sparsity=0.5, importance="sparsegpt")
    on_cpu = pk.prune(model, spec, calibration=calibration)
    on_gpu = pk.prune(on(model, "cuda", torch.float32), spec,
                      calibration=floats_to(calibration, "cuda", torch.float32))
    assert_placed(on_gpu.model, "cuda", torch.float32)
    for key, mask in on_cpu.plan.masks.items():  # float64 Hessians on both: near-identical
        assert overlap(on_gpu.plan.masks[key], mask) >= 0.99, key
    net, xi = pk.zoo.build("resnet"), pk.zoo.example_inputs("resnet", 2)
    kept = pk.prune(net, pk.Structured(sparsity=0.5), xi).plan.kept
    assert pk.prune(on(net, "cuda", torch.float32), pk.Structured(sparsity=0.5),
                    xi.cuda()).plan.kept == kept
    sparse = pk.to_sparse(on_gpu, x.cuda(), kernel="csr")
    loaded = pk.load(pk.save(sparse, tmp_path / "sparse"), build=lambda: pk.zoo.build("mlp").cuda())
    assert_placed(loaded, "cuda", torch.float32)
    assert torch.equal(outputs(loaded, x.cuda()), outputs(sparse.model, x.cuda()))
