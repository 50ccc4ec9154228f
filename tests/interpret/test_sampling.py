"""Sampled functions are the layers' own: summed over inputs (and kernel positions) they give the layer's output."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kanvision.interpret import (
    collect_inputs,
    evaluate_functions,
    find_function_modules,
    function_shape,
    record_inputs,
    sample_functions,
)
from kanvision.layers import GroupRational, KANConv2d, KANLinear, SharedKANConv2d
from kanvision.models.kan_cnn import ChannelSharedKANConv2d


@pytest.mark.parametrize("basis", ["bspline", "chebyshev", "rbf"])
def test_kan_linear_functions_sum_to_the_output(basis):
    layer = KANLinear(5, 3, basis=basis).double()
    x = torch.randn(40, 5, dtype=torch.float64)
    phi = evaluate_functions(layer, x.T)  # (3, 5, 40): phi_{o,i}(x_i) per sample
    assert phi.shape == (3, 5, 40)
    torch.testing.assert_close(phi.sum(1).T + layer.bias, layer(x), atol=1e-12, rtol=0)


@pytest.mark.parametrize("padding, border, groups", [(0, "function", 1), (1, "function", 1), (1, "function", 2)])
def test_kan_conv2d_functions_sum_to_the_output(padding, border, groups):
    layer = KANConv2d(4, 6, 3, padding=padding, groups=groups, border=border).double()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    # independent of the layer's conv: unfold the zero-padded input, phi_{o,i,p} at the pixel under position p
    patches = F.unfold(x, 3, padding=padding)  # (N, C * 9, L): channel-major, kernel position inside
    n, _, positions = patches.shape
    values = patches.view(n, 4, 9, positions).permute(1, 2, 0, 3).reshape(4, -1)  # (C, 9 * N * L)
    phi = evaluate_functions(layer, values)  # (6, 4 / groups, 3, 3, 9 * N * L)
    assert phi.shape == (6, 4 // groups, 3, 3, 9 * n * positions)
    phi = phi.flatten(2, 3).unflatten(-1, (9, n, positions))  # (out, in, kernel position p, read at q, N, L)
    phi = phi.diagonal(dim1=2, dim2=3)  # each position at its own pixels: (out, in, N, L, 9)
    # grouped: function (o, j) reads input channel input_index[o, j], the j-th channel of o's group
    out = phi.sum((1, -1)) + layer.bias[:, None, None]  # (out, N, L)
    torch.testing.assert_close(out, layer(x).flatten(2).permute(1, 0, 2), atol=1e-12, rtol=0)


def test_rkan_shared_kernel_functions_sum_to_the_output():
    layer = SharedKANConv2d(3, padding=0).double()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    assert function_shape(layer.conv) == (1, 1, 3, 3)  # sampled through its 1 -> 1 KANConv2d
    patches = F.unfold(x.reshape(6, 1, 5, 5), 3)  # (N*C, 9, L)
    phi = evaluate_functions(layer.conv, patches.permute(1, 0, 2).reshape(1, -1))[0, 0]  # (3, 3, 9 * N*C * L)
    phi = phi.flatten(0, 1).unflatten(-1, (9, 6, 9)).diagonal(dim1=0, dim2=1).sum(-1)  # (N*C, L)
    torch.testing.assert_close(phi.view(2, 3, 3, 3), layer(x), atol=1e-12, rtol=0)


def test_group_rational_functions_are_the_activation():
    rational = GroupRational(8, groups=4, init="swish", share_numerator=False).double()
    with torch.no_grad():
        rational.weight_numerator.add_(0.01 * torch.randn_like(rational.weight_numerator))
    x = torch.randn(10, 8, dtype=torch.float64)
    phi = evaluate_functions(rational, x[:, ::2].T.contiguous())  # (1, 4, 10): channel 2g of group g
    torch.testing.assert_close(phi[0].T, rational(x)[:, ::2], atol=1e-12, rtol=0)


def test_record_inputs_ranges_quantiles_and_grids():
    torch.manual_seed(0)
    model = torch.nn.Sequential(KANLinear(3, 4), KANLinear(4, 2))
    data = [torch.randn(50, 3) * torch.tensor([1.0, 2.0, 0.5]) for _ in range(4)]
    records = collect_inputs(model, data, max_samples=64, max_examples=10)
    assert sorted(records) == ["0", "1"]
    first = records["0"]
    everything = torch.cat(data)
    torch.testing.assert_close(first.minimum, everything.amin(0))
    torch.testing.assert_close(first.maximum, everything.amax(0))
    assert first.count == 200 and first.samples.shape == (3, 64) and first.examples.shape == (10, 3)
    q = first.quantiles([0.0, 0.5, 1.0])
    assert q.shape == (3, 3) and bool((q[:, 0] >= first.minimum).all()) and bool((q[:, 2] <= first.maximum).all())
    samples = sample_functions(model[0], first, num_points=11, margin=0.0)
    assert samples.y.shape == (4, 3, 11) and samples.x.shape == (4, 3, 11)
    torch.testing.assert_close(samples.x[2, 1, [0, -1]], first.range()[1].double())
    fixed = sample_functions(model[0], x_range=(-1.0, 1.0), num_points=5)
    torch.testing.assert_close(fixed.x[0, 0], torch.linspace(-1, 1, 5, dtype=torch.float64))
    # the hooks are gone after the block
    with record_inputs(model, pattern="1") as only_second:
        model(data[0])
    model(data[0])
    assert list(only_second) == ["1"] and only_second["1"].count == 50


def test_modules_found_in_models():
    model = torch.nn.Sequential(ChannelSharedKANConv2d(2, spline_scaler=True), SharedKANConv2d(), GroupRational(4, 2))
    assert list(find_function_modules(model)) == ["0.conv", "1.conv", "2"]
    assert list(find_function_modules(model, "0.*,2")) == ["0.conv", "2"]
    x = torch.randn(2, 2, 6, 6)
    records = collect_inputs(model[:2], [x])
    assert records["0.conv"].minimum.shape == (1,) and records["1.conv"].minimum.shape == (1,)
    # the channel-shared convolution's functions, evaluated through its inner KANConv2d, give its output
    conv = model[0].conv
    patches = F.unfold(x.reshape(4, 1, 6, 6).double(), 3)  # (N*C, 9, L)
    phi = evaluate_functions(conv.double(), patches.permute(1, 0, 2).reshape(1, -1))  # (2, 1, 3, 3, 9 * 4 * 16)
    phi = phi[:, 0].flatten(1, 2).unflatten(-1, (9, 4, 16)).diagonal(dim1=1, dim2=2).sum(-1)  # (kernels, N*C, L)
    expected = model[0].double()(x.double()).view(2, 2, 2, 16).permute(2, 0, 1, 3).reshape(2, 4, 16)
    torch.testing.assert_close(phi, expected, atol=1e-12, rtol=0)


def test_invalid_arguments():
    layer = KANLinear(3, 2)
    with pytest.raises(TypeError, match="Linear holds no learned univariate functions"):
        evaluate_functions(torch.nn.Linear(2, 2), torch.zeros(3))
    with pytest.raises(ValueError, match=r"points must be \(P,\) or \(3, P\)"):
        evaluate_functions(layer, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="exactly one of x_range"):
        sample_functions(layer)
    with pytest.raises(ValueError, match="num_points must be an integer >= 2, got 1"):
        sample_functions(layer, x_range=(0, 1), num_points=1)
    with pytest.raises(ValueError, match="max_samples must be an integer >= 1, got 0"):
        with record_inputs(layer, max_samples=0):
            pass
