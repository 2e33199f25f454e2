"""Measuring an arbitrary trunk's image-to-map geometry: channels, stride, offset, least input.

Shape shorthand: 3 x H x W input pixels, C channels of the trunk's map of size h x w,
S the stride, m the least input side.

A trunk is any module mapping ``Tensor[N, 3, H, W]`` to one conv map (or a dict / list of
maps, one of them chosen by key). Nothing about its layers is assumed; the geometry is
measured:

- **Map sizes** come from forward passes of zero images under ``no_grad`` in eval mode (the
  training flags are restored after; weights and batch-norm statistics are never changed),
  on the trunk's device: a trunk built on the meta device is measured from shapes alone. On
  a CPU a real pass of a small input is faster than the meta device's Python shape
  functions (0.25 s a pass for an 8-conv trunk, measured).
- **Stride**: every chain of floor- or ceil-mode convs and pools gives a side
  ``h(s) = floor((s - r) / S) + q`` for all ``s >= m``. ``S`` is read off the distance
  between two consecutive sizes at which ``h`` grows, then the formula is checked at many
  sizes (consecutive ones and far ones). A trunk whose map does not grow with the input
  (global pooling, a flatten, a resize to a fixed size) or grows by another rule is refused.
- **Least input side** ``m``: the smallest side that runs and gives a non-empty map
  (bisection; the map grows with the input).
- **Offset** (Appendix A's geometry, pixel ``i`` covering ``[i, i + 1)``): the image centre
  of map cell ``j`` is ``offset + S * j``. Measured the way the tests measure the paper's
  trunks: the input gradient of one cell is non-zero exactly on its receptive field, whose
  centre is the cell's image position. For that the trunk runs in float64 under a function
  mode that makes every path count: convs and linear layers take positive uniform weights
  (``1 / fan_in``, no bias), normalisations become the identity, max pools become average
  pools of the same window, and global reductions (a squeeze-excitation's mean) are cut from
  the gradient, on positive tiny inputs. The field must lie inside the image (its first and
  last rows strictly inside), so the probe image grows until it does.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

__all__ = ["TrunkGeometry", "measure_trunk_geometry", "select_map"]

# The first size tried (small: every probe is a forward pass); grown when the trunk needs more.
_START = 64
# Largest stride looked for, and largest probe image side for the offset.
_MAX_STRIDE = 256
_MAX_PROBE = 4096


@dataclass(frozen=True)
class TrunkGeometry:
    """A trunk's measured geometry (module docstring).

    Attributes:
        channels: C of the chosen map.
        stride: S, image pixels per map cell.
        offset: image position of map cell 0's receptive-field centre (both axes).
        receptive_field: side of one cell's receptive field in pixels (None: offset given).
        min_input_size: m, the least input side (both axes).
        residue, base: the side formula ``h(s) = (s - residue) // stride + base``.
    """

    channels: int
    stride: int
    offset: float
    receptive_field: int | None
    min_input_size: int
    residue: int
    base: int

    def map_side(self, size: Any) -> Any:
        """The map side for an input side (an int or an integer tensor), ``size >= m``."""
        return (size - self.residue) // self.stride + self.base


def select_map(out: Any, key: str | int | None, what: str = "the trunk") -> Tensor:
    """The one map a trunk's output holds: a tensor, or ``out[key]`` of a dict / list.

    Args:
        out: what the trunk returned.
        key: a dict key or list index; None takes the only map.
        what: how to name the trunk in errors.

    Returns:
        The chosen output.

    Raises:
        ValueError: several maps and no ``key``, or a ``key`` that is not there.
        TypeError: an output that is neither a tensor, a dict nor a list / tuple.
    """
    if isinstance(out, Tensor):
        if key is not None:
            raise ValueError(f"{what} returns one tensor; feature_key must be None, got {key!r}")
        return out
    if isinstance(out, dict):
        keys = list(out)
    elif isinstance(out, (list, tuple)):
        keys = list(range(len(out)))
    else:
        raise TypeError(
            f"{what} must return a Tensor[N, C, h, w] or a dict / list of them, got "
            f"{type(out).__name__}"
        )
    if key is None:
        if len(keys) != 1:
            raise ValueError(
                f"{what} returns {len(keys)} maps ({keys}); choose one with feature_key"
            )
        key = keys[0]
    if key not in keys:
        raise ValueError(f"feature_key {key!r} is not among {what}'s outputs {keys}")
    return out[key]


@contextlib.contextmanager
def _eval(module: nn.Module) -> Iterator[None]:
    """Eval mode for a while; every submodule's own training flag comes back after."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


class _Shapes:
    """Map shape ``(C, h, w)`` of the chosen output per input size, memoised; None: fails."""

    def __init__(self, trunk: nn.Module, key: str | int | None) -> None:
        self.trunk, self.key = trunk, key
        self.cache: dict[tuple[int, int], tuple[int, int, int] | None] = {}

    def _run(self, height: int, width: int) -> Any:
        param = next(self.trunk.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():  # eval mode, no gradients: the weights and statistics stay
            return self.trunk(torch.zeros(1, 3, height, width, device=device))

    def __call__(self, height: int, width: int) -> tuple[int, int, int] | None:
        size = (height, width)
        if size not in self.cache:
            try:
                with _eval(self.trunk):
                    out = self._run(height, width)
            except (RuntimeError, ValueError, IndexError, ZeroDivisionError):
                self.cache[size] = None  # too small for one of its layers
            else:
                out = select_map(out, self.key)
                if not isinstance(out, Tensor) or out.dim() != 4:
                    got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                    raise ValueError(
                        f"the trunk's output must be a 4-D map [N, C, h, w], got {got} for a "
                        f"{height}x{width} input (a classifier head or a flatten inside?)"
                    )
                c, h, w = (int(v) for v in out.shape[1:])
                self.cache[size] = (c, h, w) if h >= 1 and w >= 1 else None
        return self.cache[size]


def _side(shapes: _Shapes, axis: int, size: int, other: int) -> int | None:
    got = shapes(size, other) if axis == 0 else shapes(other, size)
    return None if got is None else got[1 + axis]


def _first_working(shapes: _Shapes) -> int:
    size = _START
    while shapes(size, size) is None:
        if size >= _MAX_PROBE:
            raise ValueError(
                f"the trunk fails on every input up to {_MAX_PROBE}x{_MAX_PROBE} pixels "
                "(or gives an empty map)"
            )
        size *= 2
    return size


def _not_growing(name: str, sizes: tuple[int, int], sides: tuple[Any, Any]) -> ValueError:
    return ValueError(
        f"the trunk's map {name} is not a growing function of the input {name} (got "
        f"{sides[0]} then {sides[1]} at {sizes[0]} and {sizes[1]} pixels)"
    )


def _next_step(shapes: _Shapes, axis: int, low: int) -> int:
    """The least square side ``> low`` whose map side exceeds that of ``low`` (doubling the
    distance, then bisection), checked to grow by one cell."""
    name = ("height", "width")[axis]
    base = _side(shapes, axis, low, low)
    step = 1
    while True:
        high = low + step
        side = _side(shapes, axis, high, high)
        if side is None or base is None or side < base:
            raise _not_growing(name, (low, high), (base, side))
        if side > base:
            break
        if step > 2 * _MAX_STRIDE:
            raise ValueError(
                f"the trunk's map {name} does not follow the input {name} (it stays {base} "
                f"from {low} to {high} pixels): global pooling, a flatten or a resize to a "
                "fixed size inside; give a trunk that ends with a conv map"
            )
        low, step = high, 2 * step
    while high - low > 1:  # side(low) == base < side(high)
        mid = (low + high) // 2
        if _side(shapes, axis, mid, mid) > base:
            high = mid
        else:
            low = mid
    if _side(shapes, axis, high, high) > base + 1:
        raise ValueError(
            f"the trunk's map {name} jumps from {base} to {_side(shapes, axis, high, high)} "
            f"cells between {high - 1} and {high} pixels: not one fixed stride (a stride that "
            "varies with the input, or upsampling)"
        )
    return high


def _axis_formula(shapes: _Shapes, axis: int, start: int) -> tuple[int, int, int]:
    """``(S, r, q)`` of one axis: ``h(s) = (s - r) // S + q``, checked at more sizes.

    Square inputs find the sizes where the side grows (shared by both axes); the checks at
    far sizes vary this axis alone, the other held at ``start``.
    """
    name = ("height", "width")[axis]
    first = _next_step(shapes, axis, start)
    second = _next_step(shapes, axis, first)
    stride = second - first
    residue = first % stride
    base = _side(shapes, axis, first, first) - (first - residue) // stride
    checks = [(s, s) for s in (start + 1, second + stride // 2, start + 5 * stride + 3)]
    checks += [(8 * start + 13, start)]
    for size, other in checks:
        want, got = (size - residue) // stride + base, _side(shapes, axis, size, other)
        if got != want:
            raise ValueError(
                f"the trunk's stride varies: its map {name} grows by one every {stride} "
                f"pixels from {first}, which predicts {want} at {size} pixels, but it is "
                f"{got}; sppnet needs one fixed stride"
            )
    return stride, residue, base


def _least_side(shapes: _Shapes, start: int) -> int:
    """Smallest square side that runs with a non-empty map (bisection on a growing map)."""
    low, high = 0, start  # low fails (or is 0), high works
    while high - low > 1:
        mid = (low + high) // 2
        if shapes(mid, mid) is None:
            low = mid
        else:
            high = mid
    return high


def measure_trunk_geometry(
    trunk: nn.Module,
    *,
    feature_key: str | int | None = None,
    feature_offset: float | None = None,
) -> TrunkGeometry:
    """Measure a trunk's channels, stride, least input side and offset (module docstring).

    Args:
        trunk: maps ``Tensor[N, 3, H, W]`` to a map, or a dict / list of maps.
        feature_key: which map of a dict / list output (None: the only one).
        feature_offset: give the offset instead of measuring it.

    Returns:
        The :class:`TrunkGeometry`.

    Raises:
        ValueError: an output that is not 4-D, a map that does not grow with the input or
            not by one fixed stride, different geometry along height and width, or an
            offset that cannot be measured (the message says why and to pass
            ``feature_offset``).
        TypeError: an output that is not a tensor, dict or list.
    """
    shapes = _Shapes(trunk, feature_key)
    start = _first_working(shapes)
    formulas = [_axis_formula(shapes, axis, start) for axis in (0, 1)]
    if formulas[0] != formulas[1]:
        raise ValueError(
            "the trunk's map follows the input differently along height and width "
            f"(h = (H - r) // S + q with (S, r, q) = {formulas[0]} vs {formulas[1]} for the "
            "width); sppnet needs one geometry for both axes"
        )
    stride, residue, base = formulas[0]
    least = _least_side(shapes, start)
    channels = shapes(start, start)[0]
    on_meta = any(p.is_meta for p in trunk.parameters())
    if feature_offset is not None:
        offset, field = float(feature_offset), None
    elif on_meta:
        raise ValueError(
            "a trunk on the meta device has shapes but no values: its map sizes are measured, "
            "but the receptive-field offset needs real weights; pass feature_offset"
        )
    else:
        offset, field = _measure_offset(trunk, feature_key, stride, least, residue, base)
    return TrunkGeometry(channels, stride, offset, field, least, residue, base)


# ------------------------------------------------------------------------------- offset
_NORMS = {"batch_norm", "instance_norm", "layer_norm", "group_norm", "local_response_norm"}
_REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "logsumexp", "norm"}
_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_POOL_ARGS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode")


def _named(names: tuple[str, ...], args: tuple, kwargs: dict) -> dict[str, Any]:
    return {**dict(zip(names, args, strict=False)), **kwargs}


class _ProbeMode(TorchFunctionMode):
    """Every path of the trunk counts: positive uniform weights, no norms, average pools."""

    def __torch_function__(self, func: Callable, types: Any, args=(), kwargs=None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in ("conv1d", "conv2d", "conv3d", "linear"):
            p = _named(_CONV_ARGS, args, kwargs)
            w = p["weight"]
            x = p["input"]
            p["weight"] = torch.full(w.shape, 1.0 / w[0].numel(), dtype=x.dtype, device=x.device)
            p["bias"] = None
            if name == "linear":
                return F.linear(p["input"], p["weight"])
            return func(**p)
        if name.lstrip("_") in _NORMS:
            return args[0] if args else kwargs["input"]
        if "max_pool2d" in name and "adaptive" not in name:
            p = _named(_POOL_ARGS, args, kwargs)
            if p.get("dilation", 1) not in (1, (1, 1)):
                raise ValueError("cannot measure the offset through a dilated max pool")
            return F.avg_pool2d(
                p["input"], p["kernel_size"], p.get("stride") or p["kernel_size"],
                p.get("padding", 0), bool(p.get("ceil_mode", False)), count_include_pad=False,
            )  # fmt: skip
        out = func(*args, **kwargs)
        binary = len(args) > 1 and isinstance(args[1], Tensor)
        if ("adaptive" in name or (name in _REDUCTIONS and not binary)) and isinstance(out, Tensor):
            return out.detach()  # a global context (squeeze-excitation) is not the field
        return out


def _support(trunk: nn.Module, key: Any, height: int, width: int, axis: int, cell: int):
    """``(first, last)`` image rows (``axis`` 0) / columns with a non-zero gradient of the
    map's cell ``cell`` along ``axis`` (the middle of the other axis)."""
    param = next(trunk.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    x = 1e-6 * (1 + torch.rand(1, 3, height, width, generator=gen, dtype=torch.float64))
    x = x.to(device).requires_grad_()
    with _eval(trunk), _ProbeMode():
        fmap = select_map(trunk(x), key)
    other = fmap.shape[3 - axis] // 2
    target = fmap[0, :, cell, other] if axis == 0 else fmap[0, :, other, cell]
    (grad,) = torch.autograd.grad(target.sum(), x)
    profile = grad[0].abs().sum(dim=(0, 2 - axis))  # [H] or [W]
    idx = (profile > 0).nonzero().flatten()
    if idx.numel() == 0:
        raise ValueError(
            "cannot measure the trunk's receptive-field offset: no input pixel reaches a map "
            "cell; pass feature_offset"
        )
    return int(idx[0]), int(idx[-1]), int(profile.shape[0])


def _axis_offset(trunk, key, stride, least, residue, base, axis) -> tuple[float, int]:
    size = max(least, 8 * stride, 64)
    while True:
        cells = (size - residue) // stride + base
        centres, field = [], 0
        clipped = False
        for cell in (cells // 2, cells // 2 + 1):
            shape = (size, least) if axis == 0 else (least, size)
            first, last, n = _support(trunk, key, *shape, axis, cell)
            clipped = clipped or first == 0 or last == n - 1 or cell >= cells
            centres.append((first + last + 1) / 2 - stride * cell)  # pixel i is [i, i + 1)
            field = last - first + 1
        if not clipped:
            break
        if size >= _MAX_PROBE:
            raise ValueError(
                f"cannot measure the trunk's receptive-field offset: one map cell depends on "
                f"the whole {size}-pixel input (a global operation inside?); pass "
                "feature_offset (for k // 2 padding everywhere it is 0.5 + (S - 1) / 2 at "
                "the most, often 0.5 or (S - 1) / 2 + 0.5)"
            )
        size = min(2 * size, _MAX_PROBE)
    shape = (size + 1, least) if axis == 0 else (least, size + 1)
    first, last, _ = _support(trunk, key, *shape, axis, cells // 2)
    if (first + last + 1) / 2 - stride * (cells // 2) != centres[0]:
        raise ValueError(
            f"the trunk's receptive-field offset depends on the input size (at {size} and "
            f"{size + 1} pixels it differs: TensorFlow-style 'same' padding?); pass "
            "feature_offset to use one offset for every size"
        )
    if centres[0] != centres[1]:
        raise ValueError(
            f"cannot measure the trunk's receptive-field offset: neighbouring cells sit "
            f"{centres[1] - centres[0] + stride:g} pixels apart, not the stride {stride}; "
            "pass feature_offset"
        )
    return centres[0], field


def _measure_offset(trunk, key, stride, least, residue, base) -> tuple[float, int]:
    """``(offset, receptive field)`` from the gradient probe, the same for both axes."""
    rows = _axis_offset(trunk, key, stride, least, residue, base, 0)
    cols = _axis_offset(trunk, key, stride, least, residue, base, 1)
    if rows != cols:
        raise ValueError(
            f"the trunk's receptive field differs along height (offset {rows[0]:g}, field "
            f"{rows[1]}) and width (offset {cols[0]:g}, field {cols[1]}); pass feature_offset "
            "to use one offset for both"
        )
    if not math.isfinite(rows[0]):
        raise ValueError("cannot measure the trunk's receptive-field offset; pass feature_offset")
    return rows
