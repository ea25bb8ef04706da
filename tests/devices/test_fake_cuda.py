"""Device mismatches found without a GPU.

Under :class:`torch._subclasses.fake_tensor.FakeTensorMode` a tensor can claim
``device="cuda"`` on a CPU-only machine: no value is computed, but every op checks its
operands' devices and raises on a CPU/CUDA mix, which is exactly the bug of a tensor
created without ``device=`` next to the model's. So the value-free parts that create
tensors run here on fake CUDA tensors: the SparseGPT Hessian, update and N:M choice, the
reconstruction target, Wanda scores and N:M masks, bias correction, the calibration
statistics, channel and head / neuron score accumulation, random scores, mask
application, float32 master weights, BatchNorm moments and the replay of index tensors on
the structured trace's (CPU) atom maps.

What reads values cannot run under the mode (``.item()``, ``.numpy()``, a bool of a
tensor, boolean indexing): SparseGPT's and Wanda's unstructured selection (an exact k-th
value: ``prunekit.select.unstructured``), OWL's outlier ratio, the held zeros of a
finalized model (:mod:`prunekit.recover.zeros`, which asks which weights have zeros) and
padded calibration batches (the token mask indexes the rows). Backward passes (Taylor
scores, recovery steps) need a real device context: the matrix runs them. Decoding and loading read
numpy arrays: they are checked on the ``meta`` device instead (another device the CPU
code must not hand to numpy); the real-CUDA cases of ``test_dtype_matrix.py`` cover the
rest where a GPU is present.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

import prunekit as pk
from prunekit.apply.masks import apply_mask
from prunekit.graph.groups import analyze
from prunekit.importance.channel import (
    bn_scale_scores,
    channel_scores,
    magnitude_scores,
    taylor_scores,
)
from prunekit.importance.weight import weight_scores
from prunekit.oneshot.calibration import InputStats
from prunekit.oneshot.correction import corrected_bias
from prunekit.oneshot.reconstruct import dense_target_weight
from prunekit.oneshot.sparsegpt import inverse_hessian_factor, sparsegpt_prune
from prunekit.oneshot.wanda import wanda_mask, wanda_scores
from prunekit.recover.batchnorm import _BatchMoments
from prunekit.recover.precision import MasterWeights
from prunekit.sparse.decode import decode_masked_into
from prunekit.sparse.formats import FORMATS, encode, format_bytes

CUDA = torch.device("cuda", 0)
BF16 = torch.bfloat16


@pytest.fixture
def fake_cuda():
    """A mode in which ``device="cuda"`` tensors exist without a GPU (real CPU tensors
    used inside it, such as a graph analysis's channel indices, become fake CPU ones)."""
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        yield mode


def _on_cuda(*tensors: torch.Tensor) -> None:
    for tensor in tensors:
        assert tensor.device == CUDA, tensor.device


def test_sparsegpt_hessian_update_and_nm_choice_stay_on_the_device(fake_cuda):
    x = torch.randn(64, 16, device="cuda")
    xtx = x.t() @ x
    hinv = inverse_hessian_factor(xtx.clone(), 64, damp=0.01)  # consumed, damped in place
    weight = torch.randn(8, 16, device="cuda", dtype=BF16)
    new_weight, keep = sparsegpt_prune(weight, hinv, nm=(2, 4), block_size=8)
    _on_cuda(hinv, new_weight, keep)
    assert new_weight.dtype == BF16 and hinv.dtype == xtx.dtype  # the Gram's own dtype
    target = dense_target_weight(weight, xtx, xtx, ridge=0.5)  # ridge on the same diagonal
    _on_cuda(target)


def test_wanda_scores_nm_mask_and_bias_correction_stay_on_the_device(fake_cuda):
    weight = torch.randn(8, 16, device="cuda", dtype=BF16)
    sq_sum = torch.rand(16, device="cuda", dtype=torch.float64)
    scores = wanda_scores(weight, sq_sum)
    keep = wanda_mask(weight, sq_sum, nm=(2, 4), already_removed=torch.zeros_like(
        weight, dtype=torch.bool))
    bias = corrected_bias(torch.zeros(8, device="cuda", dtype=BF16), weight, weight,
                          torch.rand(16, device="cuda", dtype=torch.float64))
    _on_cuda(scores, keep, bias)
    assert bias.dtype == BF16
    _on_cuda(weight_scores("random", weight))  # drawn on the CPU generator, then moved


def test_calibration_statistics_accumulate_on_the_layers_device(fake_cuda):
    with torch.device("cuda"):
        layer = nn.Linear(16, 8, dtype=BF16)
    stats = InputStats({"weight": layer}, gram=True)
    layer(torch.randn(2, 5, 16, device="cuda", dtype=BF16))  # hook runs; unpadded batch
    stats.remove()
    _on_cuda(stats.sq_sum["weight"], stats.x_sum["weight"], stats.xtx["weight"],
             stats.mean("weight"))
    assert stats.xtx["weight"].dtype == torch.float32 and stats.sq_sum["weight"].dtype == torch.float64
    assert stats.count["weight"] == 10


@pytest.fixture(scope="module")
def resnet_analysis():
    """The zoo ResNet and its channels, traced for real on the CPU (before any fake mode)."""
    model, x = pk.zoo.build("resnet"), pk.zoo.example_inputs("resnet", 2)
    return model, analyze(model, x)


def test_channel_scores_accumulate_on_the_weights_device(resnet_analysis, fake_cuda):
    model, analysis = resnet_analysis
    state = dict(model.state_dict(keep_vars=True))
    tensors = {k: torch.empty(v.shape, device="cuda", dtype=BF16 if v.is_floating_point()
                              else v.dtype) for k, v in state.items()}
    grads = {k: torch.empty(v.shape, device="cuda", dtype=torch.float64)
             for k, v in state.items() if v.is_floating_point()}
    for scores in (magnitude_scores(analysis, tensors, 1), magnitude_scores(analysis, tensors, 2),
                   bn_scale_scores(analysis, tensors), taylor_scores(analysis, tensors, grads)):
        _on_cuda(scores)
        assert scores.shape == (analysis.num_channels,) and scores.dtype == torch.float64


def test_channel_scores_of_a_model_on_the_device_come_back_on_the_cpu(resnet_analysis,
                                                                      fake_cuda):
    _, analysis = resnet_analysis
    with torch.device("cuda"):
        on_device = pk.zoo.build("resnet")
    for kind in ("l1", "l2", "bn_scale", "random"):
        scores = channel_scores(kind, analysis, on_device)
        assert scores.device.type == "cpu", kind  # selection runs on the CPU


def test_head_and_neuron_scores_of_a_model_on_the_device(fake_cuda):
    transformers = pytest.importorskip("transformers")
    from prunekit.hf.arch import read_arch
    from prunekit.hf.importance import head_scores, neuron_scores

    config = transformers.LlamaConfig(
        vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=8,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
    )
    with torch.device("cuda"):
        model = transformers.LlamaForCausalLM(config)
    arch = read_arch(model)
    for scores in (head_scores(model, arch, "magnitude", None, None),
                   neuron_scores(model, arch, "magnitude", None, None)):
        assert {s.device.type for s in scores.values()} == {"cpu"}


def test_masks_master_weights_and_batchnorm_moments_follow_the_device(fake_cuda):
    with torch.device("cuda"):
        layer = nn.Linear(16, 8, dtype=BF16)
        norm = nn.BatchNorm1d(8, dtype=BF16)
    apply_mask(layer, torch.ones(8, 16, dtype=torch.bool))  # a CPU mask moves to the layer
    _on_cuda(layer.weight_mask, layer(torch.randn(2, 16, device="cuda", dtype=BF16)))
    master = MasterWeights([layer.weight_orig, layer.bias])
    _on_cuda(master[layer.bias])
    assert master[layer.bias].dtype == torch.float32
    layer.bias.grad = torch.ones(8, device="cuda", dtype=BF16)
    master.gradients_in()
    master.weights_out()
    _on_cuda(master[layer.bias].grad)
    moments = _BatchMoments()
    moments.hook(norm, (torch.randn(4, 8, device="cuda", dtype=BF16),))
    moments.write(norm)
    _on_cuda(norm.running_mean, norm.running_var)
    assert norm.running_mean.dtype == BF16


@pytest.mark.parametrize("by_keyword", [False, True])
def test_layout_rules_replay_index_tensors_on_the_cpu_maps(fake_cuda, by_keyword):
    # structured tracing keeps its atom maps on the CPU whatever the model's device; an
    # op whose index comes from the model (index_select, getitem with a tensor) is replayed
    # on those maps, with the index brought to them
    from types import SimpleNamespace

    from prunekit.graph.rules_layout import _as_map, _host_indices, _run_on_maps

    x = torch.empty(3, 6, device="cuda")
    index = torch.empty(2, dtype=torch.long, device="cuda")
    amap = torch.arange(6).view(1, 6)  # one atom per channel, on the CPU
    state = SimpleNamespace(map_of=lambda t: amap if t is x else None)
    if by_keyword:
        args, kwargs = _as_map(state, (x,)), _host_indices({"dim": 1, "index": index})
    else:
        args, kwargs = _as_map(state, (x, 1, index)), {}
    replayed = _run_on_maps("index_select", torch.index_select, args, kwargs)
    assert replayed.device.type == "cpu" and tuple(replayed.shape) == (3, 2)


# --- decoding and loading on a device that is not the CPU (meta) --------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_decoding_into_a_tensor_off_the_cpu(fmt):
    gen = torch.Generator().manual_seed(0)
    keep = torch.rand(16, 32, generator=gen) < 0.2
    value = torch.randn(16, 32, generator=gen) * keep
    if format_bytes(fmt, keep, 4) is None:
        pytest.skip(f"{fmt} does not apply to this tensor")
    enc = encode(value, fmt, keep if fmt != "dense" else None)
    out = torch.empty(16, 32, device="meta")
    mask = torch.empty(16, 32, device="meta", dtype=torch.bool)
    decode_masked_into(enc, out, mask)  # decoded in CPU memory, then copied there
    assert out.device.type == "meta" and mask.device.type == "meta"


@pytest.mark.parametrize("kind", ["masked", "sparse"])
def test_loading_into_a_model_built_off_the_cpu(tmp_path, kind):
    model, x = pk.zoo.build("mlp"), pk.zoo.example_inputs("mlp", 4)
    result = pk.prune(model, pk.Unstructured(sparsity=0.9), x)
    saved = result if kind == "masked" else pk.to_sparse(result, x, kernel="csr")
    folder = pk.save(saved, os.path.join(tmp_path, kind))
    loaded = pk.load(folder, build=lambda: pk.zoo.build("mlp").to("meta"))
    tensors = [*loaded.parameters(), *loaded.buffers()]
    assert {t.device.type for t in tensors} == {"meta"}

