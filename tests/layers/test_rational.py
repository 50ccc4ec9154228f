"""GroupRational against an independent float64 formula, its inits, tie-break, variance gains and dtypes."""

import math

import pytest
import torch
import torch.nn.functional as F

from kanvision.layers import GroupRational
from kanvision.layers.rational import RATIONAL_INITS, group_rational_pytorch, list_rational_inits


def naive_rational(x, a, b, groups):
    """Elementwise float64 loop over groups with explicit powers (no Horner, no broadcasting tricks)."""
    x = x.double()
    out = torch.empty_like(x)
    width = x.shape[-1] // groups
    for g in range(groups):
        xs = x[..., g * width : (g + 1) * width]
        ag = a[0] if a.shape[0] == 1 else a[g]
        num = sum(ag[k].double() * xs**k for k in range(ag.shape[0]))
        den = 1 + sum(b[g, i - 1].double().abs() * xs.abs() ** i for i in range(1, b.shape[1] + 1))
        out[..., g * width : (g + 1) * width] = num / den
    return out


def random_coefficients(groups, shared, m=5, n=4, dtype=torch.float64):
    a = torch.randn(1 if shared else groups, m + 1, dtype=dtype) * 0.3
    b = torch.randn(groups, n, dtype=dtype) * 0.3
    b[:, 0::2] = -b[:, 0::2].abs() - 0.05  # negative odd-order b_1, b_3: the abs must hold
    return a, b


def wide_inputs(*shape, dtype=torch.float64):
    x = torch.randn(*shape, dtype=dtype)
    x.view(-1)[:6] = torch.tensor([1e3, -1e3, 250.0, -17.0, 0.0, 1e-4], dtype=dtype)  # |x| up to 1e3
    return x


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("groups", [1, 4])
def test_values_and_gradients_match_float64_formula(shared, groups):
    a, b = random_coefficients(groups, shared)
    x = wide_inputs(3, 5, 8 * groups)
    x64, a64, b64 = (t.clone().requires_grad_() for t in (x, a, b))
    xr, ar, br = (t.clone().requires_grad_() for t in (x, a, b))
    ref = naive_rational(x64, a64, b64, groups)
    out = group_rational_pytorch(xr, ar, br, groups)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    grad_out = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (x64, a64, b64), grad_out)
    grads = torch.autograd.grad(out, (xr, ar, br), grad_out)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_gradients_match_closed_form():
    """dF/dx = P'/Q - S P/Q^2, dF/da_k = x^k/Q, dF/db_i = -(P/Q^2) sign(b_i) |x|^i (KAT, arXiv 2409.10594)."""
    a, b = random_coefficients(1, True)
    x = wide_inputs(50, 1)
    xr, ar, br = (t.clone().requires_grad_() for t in (x, a, b))
    out = group_rational_pytorch(xr, ar, br, 1)
    gx, ga, gb = torch.autograd.grad(out.sum(), (xr, ar, br))
    xs = x[:, 0]
    P = sum(a[0, k] * xs**k for k in range(6))
    dP = sum(k * a[0, k] * xs ** (k - 1) for k in range(1, 6))
    Q = 1 + sum(b[0, i - 1].abs() * xs.abs() ** i for i in range(1, 5))
    S = xs.sign() * sum(i * b[0, i - 1].abs() * xs.abs() ** (i - 1) for i in range(1, 5))
    torch.testing.assert_close(gx[:, 0], dP / Q - S * P / Q**2)
    torch.testing.assert_close(ga[0], torch.stack([(xs**k / Q).sum() for k in range(6)]))
    expected_gb = torch.stack([(-(P / Q**2) * b[0, i - 1].sign() * xs.abs() ** i).sum() for i in range(1, 5)])
    torch.testing.assert_close(gb[0], expected_gb)


@pytest.mark.parametrize("shared", [True, False])
def test_gradcheck(shared):
    a, b = random_coefficients(2, shared)
    x = torch.randn(4, 6, dtype=torch.float64) * 3
    x[x.abs() < 1e-3] = 0.5  # keep away from the |x| kink, where finite differences are not defined
    inputs = tuple(t.clone().requires_grad_() for t in (x, a, b))
    assert torch.autograd.gradcheck(lambda x, a, b: group_rational_pytorch(x, a, b, 2), inputs)
    assert torch.autograd.gradgradcheck(lambda x, a, b: group_rational_pytorch(x, a, b, 2), inputs)


def test_module_parameter_layout_and_group_assignment():
    layer = GroupRational(32, groups=8)
    assert layer.weight_numerator.shape == (1, 6) and layer.weight_denominator.shape == (8, 4)
    assert sum(p.numel() for p in layer.parameters()) == 38
    unshared = GroupRational(32, groups=8, order=(3, 2), share_numerator=False)
    assert unshared.weight_numerator.shape == (8, 4) and unshared.weight_denominator.shape == (8, 2)
    # channel c belongs to group c // (C / groups): give group 2 (channels 8..11) a distinct denominator
    with torch.no_grad():
        layer.weight_denominator.zero_()
        layer.weight_denominator[2, 1] = 1.0
    x = torch.full((1, 32), 2.0)
    y = layer(x)[0]
    expected = torch.full((32,), 2.0)
    expected[8:12] = 2.0 / 5.0
    torch.testing.assert_close(y, expected)


def test_channel_dim_one_matches_channels_last():
    layer = GroupRational(16, groups=4, init="swish", channel_dim=1)
    last = GroupRational(16, groups=4, init="swish")
    last.load_state_dict(layer.state_dict())
    with torch.no_grad():
        layer.weight_denominator.uniform_(-0.5, 0.5)
        last.weight_denominator.copy_(layer.weight_denominator)
    x = torch.randn(2, 16, 5, 3)
    torch.testing.assert_close(layer(x), last(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="num_channels=30.*groups=8"):
        GroupRational(30, groups=8)
    with pytest.raises(ValueError, match="unknown init 'tanh'"):
        GroupRational(16, init="tanh")
    with pytest.raises(ValueError, match="order"):
        GroupRational(16, order=(3, 2), init="swish")
    with pytest.raises(ValueError, match="16 channels"):
        GroupRational(16)(torch.randn(2, 8))
    with pytest.raises(ValueError, match="share_numerator must be True or False, got 'x'"):
        GroupRational(16, share_numerator="x")
    with pytest.raises(ValueError, match="not divisible by groups=4"):
        group_rational_pytorch(torch.randn(2, 10), torch.zeros(1, 6), torch.zeros(4, 4), 4)


def test_identity_init_is_identity_and_its_denominator_trains():
    layer = GroupRational(16, groups=4, init="identity")
    x = torch.linspace(-1, 1, 16 * 64).reshape(64, 16)
    assert torch.equal(layer(x), x)  # the tie-break is invisible in float32 for |x| <= 1
    big = torch.full((1, 16), 10.0)
    torch.testing.assert_close(layer(big), big, rtol=2e-4, atol=0)
    (layer(torch.randn(8, 16) * 3) ** 2).sum().backward()
    assert (layer.weight_denominator.grad != 0).all(), "every b_i must receive a gradient at the identity init"
    assert layer.weight_numerator.grad.abs().sum() > 0


def test_swish_init_fits_silu():
    layer = GroupRational(8, groups=8, init="swish")
    layer = layer.double()
    x = torch.linspace(-3, 3, 8 * 1001, dtype=torch.float64).reshape(-1, 8)
    assert (layer(x) - F.silu(x)).abs().max().item() < 1e-5  # the published fit is tight on [-3, 3] ...
    x = torch.linspace(-8, 8, 8 * 1001, dtype=torch.float64).reshape(-1, 8)
    assert (layer(x) - F.silu(x)).abs().max().item() < 0.05  # ... and drifts to 0.049 at x = -8


def test_gelu_init_constraints_and_error():
    layer = GroupRational(1, groups=1, init="gelu").double()
    x = torch.linspace(-8, 8, 32001, dtype=torch.float64)[:, None]
    assert (layer(x) - F.gelu(x)).abs().max().item() <= 1e-2
    zero = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(layer(zero).sum(), zero)
    assert layer(zero).item() == 0.0 and slope.item() == 0.5
    h = 1e-6  # both one-sided slopes (the |x| terms could make a kink at 0)
    right = layer(torch.full((1, 1), h, dtype=torch.float64)).item() / h
    left = layer(torch.full((1, 1), -h, dtype=torch.float64)).item() / -h
    assert right == pytest.approx(0.5, abs=1e-5) and left == pytest.approx(0.5, abs=1e-5)


def test_relu_init_error():
    layer = GroupRational(1, groups=1, init="relu").double()
    x = torch.linspace(-8, 8, 32001, dtype=torch.float64)[:, None]
    assert (layer(x) - F.relu(x)).abs().max().item() < 0.05
    assert layer(torch.zeros(1, 1, dtype=torch.float64)).item() == 0.0


@pytest.mark.slow
def test_fit_script_refits_the_stored_gelu():
    """The fit is a non-convex optimisation whose last digits differ between CPUs (BLAS, vector width): the script
    must find a fit as good as the stored one under the same constraints, not the same bits."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "scripts" / "fit_rational.py"
    spec = importlib.util.spec_from_file_location("fit_rational", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    numerator, denominator, err = module.fit("gelu", 8.0)
    assert numerator[:2] == [0.0, 0.5]  # F(0) = 0, F'(0) = 0.5
    x = torch.linspace(-8, 8, 16001, dtype=torch.float64)
    fitted = group_rational_pytorch(
        x[:, None], torch.tensor([numerator], dtype=torch.float64), torch.tensor([denominator], dtype=torch.float64), 1
    )[:, 0]
    assert (fitted - F.gelu(x)).abs().max().item() == pytest.approx(err, rel=1e-6)
    stored_err = module.max_error("gelu", 8.0)
    assert err <= 1.02 * stored_err and err <= 1e-2


@pytest.mark.parametrize(("name", "function", "paper_alpha"), [("gelu", F.gelu, 2.3568), ("relu", F.relu, 2.0)])
def test_variance_gain_of_fits_close_to_target_function(name, function, paper_alpha):
    x = torch.randn(400_000, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    exact = 1.0 / function(x).square().mean().item()
    assert exact == pytest.approx(paper_alpha, rel=1e-2)  # the paper's numbers are E[f^2] of the true f
    assert GroupRational(8, init=name).variance_gain() == pytest.approx(exact, rel=4e-2)


def test_variance_gain_matches_paper_and_monte_carlo():
    """alpha = Var[x]/E[F(x)^2]: identity 1 (paper), swish 2.8178 for the exact SiLU (the rational fit is close)."""
    assert GroupRational(8, init="identity").variance_gain() == pytest.approx(1.0, rel=1e-5)
    swish = GroupRational(8, init="swish")
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(400_000, 8, generator=gen, dtype=torch.float64)
    monte_carlo = 1.0 / swish.double()(x).square().mean().item()
    assert swish.variance_gain() == pytest.approx(monte_carlo, rel=1e-2)
    assert swish.variance_gain() == pytest.approx(2.8178, rel=1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_dtypes_compute_in_float32_or_better(dtype):
    layer = GroupRational(16, groups=4, init="swish")
    x = (torch.randn(4, 16) * 4).to(dtype)
    y = layer(x)
    assert y.dtype == dtype
    ref = naive_rational(x, layer.weight_numerator.detach(), layer.weight_denominator.detach(), 4)
    tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 1e-2, torch.float16: 2e-3}[dtype]
    torch.testing.assert_close(y.double(), ref.to(dtype).double(), rtol=tol, atol=tol)


def test_bf16_autocast_cpu():
    layer = GroupRational(16, groups=4, init="swish")
    lin = torch.nn.Linear(16, 16)
    x = torch.randn(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(lin(x))
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), layer(lin(x)), rtol=3e-2, atol=3e-2)


def test_inits_listed():
    assert set(list_rational_inits()) == set(RATIONAL_INITS)
    assert {"identity", "swish"} <= set(list_rational_inits())
    assert math.isfinite(GroupRational(8, init="swish").variance_gain())


def test_kernel_dispatch(monkeypatch):
    """Auto mode never touches the kernel module on CPU; use_kernel=True hands it channels-last x."""
    import sys
    import types

    calls = []

    def fake_group_rational(x, numerator, denominator, groups):
        calls.append((tuple(x.shape), groups))
        return group_rational_pytorch(x, numerator, denominator, groups)

    fake = types.ModuleType("kanvision.kernels.group_rational")
    fake.group_rational = fake_group_rational
    monkeypatch.setitem(sys.modules, "kanvision.kernels.group_rational", fake)
    x = torch.randn(2, 16, 3, 5)
    auto = GroupRational(16, groups=4, init="swish", channel_dim=1)
    forced = GroupRational(16, groups=4, init="swish", channel_dim=1, use_kernel=True)
    torch.testing.assert_close(forced(x), auto(x))
    assert calls == [((2, 3, 5, 16), 4)]
    with pytest.raises(ValueError, match="use_kernel"):
        GroupRational(16, use_kernel="yes")


@pytest.mark.parametrize("init", list_rational_inits())
def test_float32_stays_finite_and_exact_up_to_1e30(init):
    """x^5 overflows float32 from |x| ~ 4e7; the evaluation divides by the leading power instead. The float64 naive
    formula (x^5 = 1e150 is fine there) is the reference."""
    layer = GroupRational(16, groups=2, init=init)
    with torch.no_grad():
        layer.weight_denominator.mul_(torch.linspace(0.5, 1.5, 8).view(2, 4))  # groups differ
    magnitudes = torch.tensor([1e30, 1e20, 1e12, 4.5e7, 1e4, 1.5, 1.0, 0.5, 0.0])
    x = torch.cat([magnitudes, -magnitudes[:7]]).view(1, 16)
    y = layer(x)
    assert torch.isfinite(y).all()
    ref = naive_rational(x, layer.weight_numerator.detach(), layer.weight_denominator.detach(), 2)
    torch.testing.assert_close(y.double(), ref, rtol=2e-5, atol=1e-20)  # below 1e-20: float32 underflow
    x64 = x.double().requires_grad_()
    layer64 = GroupRational(16, groups=2, init=init).double()
    layer64(x64).sum().backward()
    assert torch.isfinite(x64.grad).all() and all(torch.isfinite(p.grad).all() for p in layer64.parameters())


def test_integer_input_is_refused():
    with pytest.raises(TypeError, match="floating-point input, got torch.int64"):
        GroupRational(8)(torch.arange(8).view(1, 8))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(num_channels=16, groups=2.0), r"groups must be an int, got 2\.0"),
        (dict(num_channels=16.0, groups=2), r"num_channels must be an int, got 16\.0"),
        (dict(num_channels=16, order=(2.5, 4)), r"order must be two ints \(m, n\), got \(2\.5, 4\)"),
        (dict(num_channels=16, order=(5,)), r"order must be two ints"),
        (dict(num_channels=16, groups=True), r"groups must be an int, got True"),
    ],
)
def test_argument_types_are_checked(kwargs, match):
    with pytest.raises(TypeError, match=match):
        GroupRational(**kwargs)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("which", ["numerator", "denominator"])
def test_non_finite_init_coefficients_are_refused(value, which):
    numerator, denominator = [0.0, 1.0, 0.5], [0.1, 0.2]
    (numerator if which == "numerator" else denominator)[1] = value
    with pytest.raises(ValueError, match=f"init's {which} coefficients must be finite"):
        GroupRational(8, groups=2, order=(2, 2), init=(numerator, denominator))


@pytest.mark.parametrize("channel_dim", ["x", 1.5, None, True])
def test_channel_dim_must_be_an_int(channel_dim):
    with pytest.raises(TypeError, match=f"channel_dim must be an int .* got {channel_dim!r}"):
        GroupRational(8, channel_dim=channel_dim)


def test_channel_dim_out_of_range_names_it():
    with pytest.raises(ValueError, match=r"channel_dim=3 \(valid for this input: -2\.\.1\)"):
        GroupRational(8, channel_dim=3)(torch.randn(2, 8))


def exact_rational(x: float, a: list[float], b: list[float]) -> tuple[float, float, list[float], list[float], float]:
    """F(x), dF/dx, dF/da_k, dF/db_i in exact rational arithmetic, rounded to float64 (+-inf beyond its range), and
    the size of the terms that P'/Q - sign(x) F Q'/Q cancels (dF/dx's rounding error scales with it)."""
    from fractions import Fraction

    def rounded(value: Fraction) -> float:
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf

    X, A = Fraction(x), [Fraction(v) for v in a]
    C = [Fraction(1)] + [abs(Fraction(v)) for v in b]
    sign = (X > 0) - (X < 0)
    p = sum(ak * X**k for k, ak in enumerate(A))
    dp = sum(k * ak * X ** (k - 1) for k, ak in enumerate(A) if k > 0)
    q = sum(ci * abs(X) ** i for i, ci in enumerate(C))
    dq = sum(i * ci * abs(X) ** (i - 1) for i, ci in enumerate(C) if i > 0)
    f = p / q
    grad_a = [rounded(X**k / q) for k in range(len(A))]
    grad_b = [rounded(-f * abs(X) ** i / q * ((v > 0) - (v < 0))) for i, v in enumerate(b, 1)]
    terms = sum(abs(k * ak * X ** (k - 1)) for k, ak in enumerate(A) if k > 0) + abs(f) * dq
    return rounded(f), rounded((dp - sign * f * dq) / q), grad_a, grad_b, rounded(terms / q)


ORDERS_AND_INITS = [
    ((5, 4), "identity"),
    ((5, 4), "random"),
    ((12, 1), "identity"),
    ((12, 1), "random"),
    ((1, 2), "identity"),
    ((3, 6), "random"),
    ((7, 7), "random"),
    ((4, 3), "top denominator coefficients 0"),
]


@pytest.mark.parametrize(("order", "init"), ORDERS_AND_INITS)
def test_every_order_is_finite_and_exact_in_float32_up_to_1e30(order, init):
    """Each of 22 inputs |x| in [0, 1e30] gets its own group (own denominator, own numerator), so that the
    coefficient gradients are per input; values and all gradients in float32 against exact rational arithmetic
    wherever that is within float32's range (beyond it the result overflows). x^12 alone overflows float32 from
    |x| ~ 1.6e3."""
    magnitudes = [0.0, 1e-3, 0.5, 1.0, 1.5, 10.0, 1e3, 1e6, 1e12, 1e20, 1e30]
    values = [v for m in magnitudes for v in (m, -m)]
    groups = len(values)
    m, n = order
    layer = GroupRational(groups, groups=groups, order=order, share_numerator=False)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        if init != "identity":
            layer.weight_numerator.copy_(torch.randn(groups, m + 1, generator=generator))
            layer.weight_denominator.copy_(torch.randn(groups, n, generator=generator))
        if init == "top denominator coefficients 0":  # the effective denominator degree is 1, not n
            layer.weight_denominator[:, 1:] = 0.0
    x = torch.tensor(values).view(1, groups).requires_grad_()
    y = layer(x)
    y.sum().backward()
    a, b = layer.weight_numerator.detach().tolist(), layer.weight_denominator.detach().tolist()
    exact = [exact_rational(v, a[g], b[g]) for g, v in enumerate(values)]
    want = {
        "F": torch.tensor([e[0] for e in exact], dtype=torch.float64),
        "dF/dx": torch.tensor([e[1] for e in exact], dtype=torch.float64),
        "dF/da": torch.tensor([e[2] for e in exact], dtype=torch.float64),
        "dF/db": torch.tensor([e[3] for e in exact], dtype=torch.float64),
    }
    got = {"F": y[0], "dF/dx": x.grad[0], "dF/da": layer.weight_numerator.grad, "dF/db": layer.weight_denominator.grad}
    float32_max = torch.finfo(torch.float32).max
    for name, expected in want.items():
        actual = got[name].double()
        representable = expected.abs() < float32_max / 2
        assert representable[:, ..., 0].sum() if expected.dim() > 1 else representable.sum()
        assert torch.isfinite(actual[representable]).all(), name
        # the rounding of float32 cancellations in dF/dx for |x| <= 1; beyond, the evaluation has none
        cancelled = [
            e[4] * 1e-6 if abs(v) <= 1 and name == "dF/dx" else 0.0 for e, v in zip(exact, values, strict=True)
        ]
        atol = torch.tensor(cancelled, dtype=torch.float64).view(-1, *[1] * (expected.dim() - 1)).clamp_min(1e-30)
        assert ((actual - expected).abs() <= 2e-5 * expected.abs() + atol)[representable].all(), name
