"""pykan's importance on recorded inputs, and pruning that removes exactly the unimportant inputs and outputs."""

from __future__ import annotations

import math

import pytest
import torch

from kanvision.interpret import collect_inputs, evaluate_functions, record_inputs
from kanvision.interpret.importance import function_importance, model_importance
from kanvision.interpret.pruning import prune_layer, prune_sequential
from kanvision.layers import KANConv2d, KANLinear


def _zero_input(layer, index: int) -> None:
    """Base weight and every basis coefficient of input ``index`` set to 0: its functions are all zero."""
    m = layer.num_terms
    with torch.no_grad():
        layer.weight[:, index * m : (index + 1) * m] = 0.0


def _zero_output(layer, index: int) -> None:
    with torch.no_grad():
        layer.weight[index] = 0.0


def test_importance_is_mean_abs_phi_and_zero_for_a_zeroed_input():
    layer = KANLinear(4, 3, basis="bspline").double()
    _zero_input(layer, 0)
    x = torch.randn(300, 4, dtype=torch.float64)
    records = collect_inputs(layer, [x[:100], x[100:]], max_samples=1000)
    scores = function_importance(layer, records["model"], chunk_size=64)
    expected = evaluate_functions(layer, x.T).abs().mean(-1)  # every sample recorded: the exact mean
    torch.testing.assert_close(scores.edges, expected, atol=1e-12, rtol=0)
    assert bool((scores.edges[:, 0] == 0).all()) and scores.per_input[0].item() == 0.0
    assert bool((scores.per_input[1:] > 0).all())
    torch.testing.assert_close(scores.per_output, expected.amax(1))
    assert scores.top(2)[0] == tuple(int(v) for v in torch.nonzero(expected == expected.max())[0])
    assert len(scores.top()) == 12 and scores.per_edge().shape == (3, 4)


def test_conv_importance_per_kernel_position_and_grouped_inputs():
    conv = KANConv2d(4, 6, 3, padding=1, groups=2).double()
    _zero_input(conv, 1)  # channel 1 of group 0 and channel 3 of group 1 (per-group weight layout)
    records = collect_inputs(conv, [torch.randn(3, 4, 6, 6, dtype=torch.float64)])
    scores = model_importance(conv, records)["model"]
    assert scores.edges.shape == (6, 2, 3, 3)
    assert scores.per_input.tolist()[1] == 0.0 and scores.per_input.tolist()[3] == 0.0
    assert scores.per_input[0] > 0 and scores.per_input[2] > 0 and scores.per_edge().shape == (6, 2)


def test_pruning_a_kan_linear_removes_exactly_the_zero_input_and_output():
    layer = KANLinear(5, 4, basis="chebyshev").double()
    _zero_input(layer, 2)
    _zero_output(layer, 3)
    x = torch.randn(200, 5, dtype=torch.float64)
    records = collect_inputs(layer, [x])
    pruned, report = prune_layer(layer, records["model"], threshold=1e-9)
    assert report.removed_inputs == [2] and report.kept_inputs == [0, 1, 3, 4]
    assert report.removed_outputs == [3] and report.kept_outputs == [0, 1, 2]
    assert type(pruned) is KANLinear and (pruned.in_features, pruned.out_features) == (4, 3)
    assert report.max_abs_difference <= 1e-6
    torch.testing.assert_close(pruned(x[:, [0, 1, 3, 4]]), layer(x)[:, :3], atol=1e-6, rtol=0)
    only_inputs, report = prune_layer(layer, records["model"], threshold=1e-9, outputs=False)
    assert only_inputs.out_features == 4 and report.removed_outputs == []


def test_pruning_a_kan_conv2d_removes_exactly_the_zero_channel():
    conv = KANConv2d(3, 4, 3, padding=1, basis="bspline").double()  # border="function": pads go through phi
    _zero_input(conv, 0)
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    records = collect_inputs(conv, [x])
    pruned, report = prune_layer(conv, records["model"], threshold=1e-9)
    assert report.removed_inputs == [0] and report.kept_inputs == [1, 2] and report.removed_outputs == []
    assert type(pruned) is KANConv2d and pruned.in_channels == 2 and pruned.border == "function"
    assert report.max_abs_difference <= 1e-6
    torch.testing.assert_close(pruned(x[:, 1:]), conv(x), atol=1e-6, rtol=0)


def test_prune_sequential_keeps_the_networks_function():
    torch.manual_seed(0)
    model = torch.nn.Sequential(KANLinear(3, 5), KANLinear(5, 2)).double()
    _zero_input(model[1], 1)  # hidden node 1 feeds nothing: removable without any change
    x = torch.randn(100, 3, dtype=torch.float64)
    with record_inputs(model) as records:
        model(x)
    pruned, reports = prune_sequential(model, records, threshold=1e-9)
    assert [layer.out_features for layer in pruned] == [4, 2]
    assert reports["0"].removed_outputs == [1] and reports["1"].removed_inputs == [1]
    torch.testing.assert_close(pruned(x), model(x), atol=1e-6, rtol=0)


def test_invalid_pruning_requests():
    conv = KANConv2d(4, 4, 3, groups=2)
    records = collect_inputs(conv, [torch.randn(1, 4, 5, 5)])
    with pytest.raises(ValueError, match="groups=1 only .* got groups=2"):
        prune_layer(conv, records["model"], threshold=0.1)
    layer = KANLinear(2, 2)
    records = collect_inputs(layer, [torch.randn(10, 2)])
    with pytest.raises(ValueError, match="threshold=1e\\+06 would remove every input"):
        prune_layer(layer, records["model"], threshold=1e6)
    with pytest.raises(ValueError, match="threshold must be a number >= 0, got -1"):
        prune_layer(layer, records["model"], threshold=-1)
    with pytest.raises(TypeError, match="KANLinear and KANConv1d/2d/3d, got Linear"):
        prune_layer(torch.nn.Linear(2, 2), records["model"], threshold=0.1)
    records["model"].examples = records["model"].examples[:0]
    assert math.isnan(prune_layer(layer, records["model"], threshold=0.0)[1].max_abs_difference)
