"""GnConv and the mixers against a direct transcription of the paper's formula."""

import pytest
import torch
import torch.nn.functional as F

from hornet.ops import GlobalLocalFilter, GnConv, create_mixer, parse_mixer


def gnconv_by_formula(module: GnConv, x: torch.Tensor) -> torch.Tensor:
    """Eq. (3)-(4): [p0, q0..q_{n-1}] = phi_in(x); q = s * f(q); p_{k+1} = g_k(p_k) * q_k; out = phi_out(p_n)."""
    n, dims = module.order, module.dims
    y = F.conv2d(x, module.proj_in.weight, module.proj_in.bias)
    p = y[:, : dims[0]]
    q = module.dwconv(y[:, dims[0] :]) * module.scale
    offsets = [sum(dims[:k]) for k in range(n + 1)]
    qs = [q[:, offsets[k] : offsets[k + 1]] for k in range(n)]
    p = p * qs[0]
    for k in range(1, n):
        g = module.pws[k - 1]
        p = F.conv2d(p, g.weight, g.bias) * qs[k]
    return F.conv2d(p, module.proj_out.weight, module.proj_out.bias)


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("mixer", ["dw7", "gf"])
def test_gnconv_matches_formula(order, mixer):
    dim = 32
    module = GnConv(dim, order=order, mixer=mixer, scale=1 / 3, feature_size=(8, 8)).eval()
    x = torch.randn(2, dim, 8, 8)
    torch.testing.assert_close(module(x), gnconv_by_formula(module, x), rtol=1e-5, atol=1e-6)
    assert module.dims == [dim // 2**i for i in range(order)][::-1]
    assert module.dwconv(torch.zeros(1, sum(module.dims), 8, 8)).shape == (1, sum(module.dims), 8, 8)


def test_order_one_is_gated_conv():
    module = GnConv(8, order=1, mixer="dw3", scale=1.0)
    assert len(module.pws) == 0 and module.dims == [8]
    x = torch.randn(1, 8, 5, 5)
    y = module.proj_in(x)
    expected = module.proj_out(y[:, :8] * module.dwconv(y[:, 8:]))
    torch.testing.assert_close(module(x), expected)


def test_scale_multiplies_the_mixed_branch():
    a = GnConv(16, order=1, mixer="dw3", scale=1.0)
    b = GnConv(16, order=1, mixer="dw3", scale=0.5)
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 16, 6, 6)
    # order 1: output = proj_out(p0 * s * f(q)) -> linear in s up to the proj_out bias
    bias = a.proj_out.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(b(x) - bias, 0.5 * (a(x) - bias), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,kernel", [("dw3", 3), ("dw5", 5), ("dw7", 7), ("7x7", 7), ("dw13", 13), ("dw31", 31)])
def test_depthwise_mixers(name, kernel):
    mixer = create_mixer(name, 12)
    assert isinstance(mixer, torch.nn.Conv2d)
    assert mixer.kernel_size == (kernel, kernel) and mixer.groups == 12 and mixer.bias is not None
    assert mixer(torch.randn(1, 12, 9, 9)).shape == (1, 12, 9, 9)


def test_custom_mixer_callable_is_injected():
    module = GnConv(16, order=2, mixer=lambda channels: torch.nn.Identity())
    assert isinstance(module.dwconv, torch.nn.Identity)
    assert module(torch.randn(1, 16, 4, 4)).shape == (1, 16, 4, 4)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(dim=32, order=0), "order must be an integer >= 1"),
        (dict(dim=24, order=5), r"dim must be a positive multiple of 2\^\(order-1\) = 16"),
        (dict(dim=32, order=2, mixer="conv7"), "mixer 'conv7' is unknown; allowed: 'dw<k>'"),
        (dict(dim=32, order=2, mixer="dw4"), "kernel size must be odd"),
        (dict(dim=32, order=2, mixer="dw0"), "kernel size must be odd"),
        (dict(dim=32, order=2, mixer="gf"), "needs feature_size"),
        (dict(dim=32, order=2, mixer=3), "mixer must be a mixer name or a callable"),
    ],
)
def test_invalid_arguments_name_what_is_allowed(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GnConv(kwargs.pop("dim"), **kwargs)


def test_parse_mixer():
    assert parse_mixer("7x7") == ("dw", 7)
    assert parse_mixer("GF") == ("gf", 0)
    assert parse_mixer("dw31") == ("dw", 31)


def test_gf_interleaves_local_and_global_channels():
    gf = GlobalLocalFilter(8, feature_size=(6, 6)).eval()
    x = torch.randn(2, 8, 6, 6)
    normed = gf.pre_norm(x)
    local = gf.dw(normed[:, :4])
    weight = torch.complex(gf.complex_weight[..., 0], gf.complex_weight[..., 1])
    global_ = torch.fft.irfft2(torch.fft.rfft2(normed[:, 4:], norm="ortho") * weight, s=(6, 6), norm="ortho")
    interleaved = torch.empty(2, 8, 6, 6)
    interleaved[:, 0::2], interleaved[:, 1::2] = local, global_
    with torch.no_grad():
        gf.post_norm.weight.copy_(torch.arange(1.0, 9.0))  # channel-specific, so any other order would show
        torch.testing.assert_close(gf(x), gf.post_norm(interleaved), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [(6, 6), (9, 13), (14, 14), (5, 8)])
def test_gf_resizes_filter_for_other_sizes(size):
    gf = GlobalLocalFilter(8, feature_size=(7, 7)).eval()
    assert gf.complex_weight.shape == (4, 7, 4, 2)
    out = gf(torch.randn(1, 8, *size))
    assert out.shape == (1, 8, *size) and torch.isfinite(out).all()
    assert gf.complex_weight.shape == (4, 7, 4, 2)  # resizing never touches the stored filter


def test_gf_fft_stays_fp32_under_bf16_autocast():
    gf = GlobalLocalFilter(8, feature_size=(7, 7))
    gf.filter_path = "fft"  # a 7x7 map filters through a matrix on a CPU ("auto"); the FFT is what autocast would break
    seen = []
    from torch.utils._python_dispatch import TorchDispatchMode

    class RecordFFT(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.__name__.startswith("_fft"):
                seen.append((func.__name__, args[0].dtype))
            return func(*args, **(kwargs or {}))

    x = torch.randn(2, 8, 7, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16), RecordFFT():
        out = gf(x)
    assert seen and all(dtype in (torch.float32, torch.complex64) for _, dtype in seen), seen
    assert gf.complex_weight.dtype == torch.float32
    reference = gf(x)
    assert (out.float() - reference).abs().max() < 0.1  # bf16 elsewhere, the FFT branch is exact fp32


@pytest.mark.parametrize("size", [(2, 2), (4, 4), (3, 5), (7, 7), (8, 8)])
def test_small_maps_filter_through_a_circulant_matrix_exactly_as_through_the_fft(size):
    from hornet.ops.mixers import _circular_filter, fft_filters, filter_path

    assert filter_path(*size, "cpu") == "dense"  # these sizes take the dense path
    x = torch.randn(3, 4, *size, dtype=torch.float64)
    weight = torch.randn(4, size[0], size[1] // 2 + 1, 2, dtype=torch.float64)
    spectral = torch.complex(weight[..., 0], weight[..., 1])
    by_fft = torch.fft.irfft2(torch.fft.rfft2(x, norm="ortho") * spectral, s=size, norm="ortho")
    by_matrix = _circular_filter(x, weight[..., 0], weight[..., 1])
    torch.testing.assert_close(by_matrix, by_fft, rtol=0, atol=1e-12)  # the same map, exactly

    gf = GlobalLocalFilter(8, feature_size=size)
    inputs = torch.randn(2, 8, *size, requires_grad=True)
    outputs, grads = [], []
    for context in (torch.enable_grad, lambda: fft_filters(gf)):
        with context():
            out = gf(inputs)
        out.square().sum().backward()
        outputs.append(out.detach())
        grads.append((inputs.grad.clone(), gf.complex_weight.grad.clone()))
        inputs.grad, gf.complex_weight.grad = None, None
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)
    for dense, fft in zip(grads[0], grads[1]):
        torch.testing.assert_close(dense, fft, rtol=1e-4, atol=1e-5)
