"""Inference-time conv + activation as one oneDNN call (the activation a post-op).

A trunk written as ``Conv2d`` then ``ReLU`` (ZF-5 and the other Table 1 networks) or conv
then ``ReLU6`` (EfficientNet-Lite) passes over every conv map twice in eager PyTorch: once
to write it, once more to clamp it. oneDNN applies the activation to each output block while
it is still in registers (a "post-op"), so the clamp costs nothing; PyTorch exposes that as
``torch.ops.mkldnn._convolution_pointwise``, the op its own inductor backend emits for CPU
convolutions. The conv arithmetic is the same oneDNN kernel ``nn.Conv2d`` runs and ReLU /
clamp are exact, so the result is bit-for-bit that of the two separate layers (tested).

It is used only where nothing can tell the difference: CPU float32 tensors, no autograd
(``torch.no_grad`` / ``torch.inference_mode``: the fused op has no backward), not while
tracing or exporting (ONNX keeps the plain layers), zero padding. :func:`fused_conv_allowed`
checks that; :func:`conv2d_activation` falls back to the plain layers otherwise.

Shape shorthand: N images, C channels, H x W map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["conv2d_activation", "fused_conv_allowed"]

_ACTIVATIONS = ("none", "relu", "relu6")


def _mkldnn_op() -> object | None:
    ops = getattr(torch.ops, "mkldnn", None)
    try:
        return None if ops is None else ops._convolution_pointwise
    except (AttributeError, RuntimeError):  # pragma: no cover - torch built without oneDNN
        return None


def fused_conv_allowed(x: Tensor) -> bool:
    """Whether :func:`conv2d_activation` may take the fused oneDNN path for input ``x``.

    Args:
        x: the conv input, ``Tensor[N, C, H, W]``.

    Returns:
        True for a float32 CPU tensor under no autograd (``no_grad`` / ``inference_mode``),
        outside tracing, ONNX export and ``torch.compile``, with oneDNN available.
    """
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and torch.backends.mkldnn.is_available()
        and not torch.jit.is_tracing()
        and not torch.onnx.is_in_onnx_export()
        and not torch.compiler.is_compiling()
        and _mkldnn_op() is not None
    )


def _aten_picks_onednn(x: Tensor, weight: Tensor, conv: nn.Conv2d) -> bool:
    """Whether ``F.conv2d`` itself would run this float32 CPU conv through oneDNN.

    Mirrors ATen's ``use_mkldnn`` rule for float32 (``aten/src/ATen/native/Convolution.cpp``):
    small single-image convs with kernels up to 3 x 3 and no groups go to ATen's own kernels,
    whose rounding differs. Fusing only where ATen would use oneDNN anyway keeps the result
    bit-equal to the separate layers.
    """
    n, cin, h, w = x.shape
    kh, kw = weight.shape[-2:]
    strided = any(s != 1 for s in conv.stride)
    dilated = any(d != 1 for d in conv.dilation)
    first = strided or dilated or n >= 16 or kw != 1 or kh != 1 or torch.get_num_threads() > 1
    second = conv.groups > 1 or (kw > 3 and kh > 3) or n > 1 or n * cin * h * w > 20480
    return first and second


def _plain(x: Tensor, conv: nn.Conv2d, weight: Tensor, bias: Tensor | None, act: str) -> Tensor:
    y = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    if act == "relu":
        return y.relu_()
    if act == "relu6":
        return y.clamp_(0.0, 6.0)
    return y


def conv2d_activation(
    x: Tensor,
    conv: nn.Conv2d,
    activation: str = "relu",
    weight: Tensor | None = None,
    bias: Tensor | None = None,
) -> Tensor:
    """``activation(conv(x))``, fused into one oneDNN call where allowed.

    Args:
        x: ``Tensor[N, C_in, H, W]`` (channels_last is oneDNN's native layout and is kept).
        conv: the ``nn.Conv2d`` whose geometry (stride, padding, dilation, groups) is used;
            its ``padding_mode`` must be ``"zeros"`` and its padding a tuple of ints.
        activation: ``"relu"``, ``"relu6"`` (``clamp(0, 6)``) or ``"none"``.
        weight: the weight to use instead of ``conv.weight`` (e.g. with batch norm folded in).
        bias: the bias to use instead of ``conv.bias`` (only together with ``weight``).

    Returns:
        ``Tensor[N, C_out, H', W']``, equal bit for bit to ``conv`` then the activation.

    Raises:
        ValueError: an unknown ``activation``, a ``bias`` without ``weight``, or a conv
            with string padding or a padding mode other than zeros.
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
    if weight is None and bias is not None:
        raise ValueError("bias replaces conv.bias only together with weight")
    if isinstance(conv.padding, str) or conv.padding_mode != "zeros":
        raise ValueError(
            f"conv must use zero padding given as ints, got padding={conv.padding!r}, "
            f"padding_mode={conv.padding_mode!r}"
        )
    if weight is None:
        weight, bias = conv.weight, conv.bias
    if not fused_conv_allowed(x) or not _aten_picks_onednn(x, weight, conv):
        return _plain(x, conv, weight, bias, activation)
    attr, scalars = {
        "relu": ("relu", []),
        "relu6": ("hardtanh", [0.0, 6.0]),
        "none": ("none", []),
    }[activation]
    return torch.ops.mkldnn._convolution_pointwise(
        x,
        weight,
        bias,
        list(conv.padding),
        list(conv.stride),
        list(conv.dilation),
        conv.groups,
        attr,
        scalars,
        "",
    )
