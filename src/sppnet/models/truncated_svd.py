"""Truncated SVD of fc layers: one big ``Linear`` as two thin ones (as Fast R-CNN did).

Detection runs fc6 and fc7 on ~2,000 windows per image, so once the convolutions are
shared (SPP-net, Sec. 4) the fc layers take most of the time. Fast R-CNN (Girshick, 2015,
Sec. 3.1) factors a weight ``W`` (``out x in``) by its truncated SVD,
``W ~ U_r Sigma_r V_r^T``, into a ``Linear(in, r)`` without bias (weight
``Sigma_r V_r^T``) followed by a ``Linear(r, out)`` (weight ``U_r``, the original bias):
``r * (in + out)`` multiply-adds per window instead of ``in * out``. By Eckart-Young the
product is the best rank-``r`` approximation of ``W`` in Frobenius norm; its error is
``sqrt(sum_{i > r} sigma_i^2)``.

The decomposition is computed in float64 from the eigendecomposition of the smaller Gram
matrix (``W W^T`` when ``out <= in``): with ``U_r`` its top-``r`` eigenvectors,
``Sigma_r V_r^T = U_r^T W`` exactly, so no singular value is divided by. A full SVD of
fc6's 4096 x 12800 weight takes minutes on a 2-core CPU; the Gram route takes tens of
seconds and gives the same subspace (its eigenvalues are the squared singular values).

Shape shorthand: N rows (windows), r rank.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from sppnet.models.spp_net import SPPNet

__all__ = ["LowRankLinear", "compress_fc", "truncated_svd_linear"]


class LowRankLinear(nn.Sequential):
    """``Linear(in, r, bias=False)`` then ``Linear(r, out)``: a drop-in for ``Linear(in, out)``.

    A plain :class:`torch.nn.Sequential` of the two layers, which also answers
    ``in_features`` / ``out_features`` (what code written for a ``Linear`` asks, e.g.
    :meth:`~sppnet.models.SPPNet.forward_pooled`'s check) and ``rank``.

    Args:
        first: ``Linear(in, r, bias=False)``, weight ``Sigma_r V_r^T``.
        second: ``Linear(r, out)``, weight ``U_r``, the original bias.
    """

    def __init__(self, first: nn.Linear, second: nn.Linear) -> None:
        super().__init__(first, second)

    @property
    def in_features(self) -> int:
        return self[0].in_features

    @property
    def out_features(self) -> int:
        return self[1].out_features

    @property
    def rank(self) -> int:
        return self[0].out_features


def _check_rank(rank: object, linear: nn.Linear, name: str) -> int:
    top = min(linear.in_features, linear.out_features)
    if isinstance(rank, bool) or not isinstance(rank, int):
        raise TypeError(f"{name} must be an int in 1..{top}, got {type(rank).__name__} {rank!r}")
    if not 1 <= rank <= top:
        raise ValueError(
            f"{name} must be in 1..min(in_features, out_features) = 1..{top} for a "
            f"Linear({linear.in_features}, {linear.out_features}), got {rank}"
        )
    return rank


def _low_rank_factors(weight: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """``(A, B)`` float64, ``A = Sigma_r V_r^T`` ``[r, in]``, ``B = U_r`` ``[out, r]``."""
    w = weight.detach().to(torch.float64)  # [out, in]
    out_features, in_features = w.shape
    if out_features <= in_features:
        # eigh sorts eigenvalues ascending: the top r are the last r columns.
        _, vecs = torch.linalg.eigh(w @ w.T)  # [out, out]
        u = vecs[:, -rank:].flip(1)  # [out, r], by decreasing singular value
        return u.T @ w, u.contiguous()
    # out > in: take V_r from W^T W and U_r = W V_r / sigma_r; a zero singular value
    # contributes nothing to the product, so its column of U_r is left at 0.
    _, vecs = torch.linalg.eigh(w.T @ w)  # [in], [in, in]
    v = vecs[:, -rank:].flip(1)  # [in, r]
    wv = w @ v  # [out, r] = U_r Sigma_r
    sigma = wv.norm(dim=0)  # [r]; more accurate than sqrt of the eigenvalues
    tiny = sigma.max().clamp(min=torch.finfo(torch.float64).tiny) * 1e-12
    safe = torch.where(sigma > tiny, sigma, torch.ones_like(sigma))
    u = torch.where(sigma > tiny, wv / safe, torch.zeros_like(wv))
    return sigma[:, None] * v.T, u


def truncated_svd_linear(linear: nn.Linear, rank: int) -> LowRankLinear:
    """Replace ``linear`` by its rank-``rank`` truncated SVD, as two thin layers.

    Args:
        linear: ``nn.Linear(in, out)`` (with or without bias).
        rank: ``r``, ``1 <= r <= min(in, out)``; ``min(in, out)`` reproduces the layer up
            to float rounding.

    Returns:
        :class:`LowRankLinear` (an ``nn.Sequential``): ``Linear(in, r, bias=False)`` with
        weight ``Sigma_r V_r^T`` then ``Linear(r, out)`` with weight ``U_r`` and
        ``linear``'s bias; ``Tensor[N, in] -> Tensor[N, out]``. Parameters take
        ``linear``'s dtype and device; ``linear`` is not modified.

    Raises:
        TypeError: ``linear`` is not an ``nn.Linear`` or ``rank`` not an int.
        ValueError: ``rank`` outside ``1..min(in, out)``.
    """
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
    rank = _check_rank(rank, linear, "rank")
    weight = linear.weight
    first_w, second_w = _low_rank_factors(weight, rank)  # [r, in], [out, r]
    kwargs = {"dtype": weight.dtype, "device": weight.device}
    has_bias = linear.bias is not None
    first = nn.Linear(linear.in_features, rank, bias=False, **kwargs)
    second = nn.Linear(rank, linear.out_features, bias=has_bias, **kwargs)
    with torch.no_grad():
        first.weight.copy_(first_w)
        second.weight.copy_(second_w)
        if has_bias:
            second.bias.copy_(linear.bias)
    return LowRankLinear(first, second)


def compress_fc(model: SPPNet, rank6: int | None, rank7: int | None) -> SPPNet:
    """A copy of an SPP-net whose fc6 and/or fc7 are replaced by truncated SVDs.

    The model's head calls ``self.fc6(pooled)`` and ``self.fc7(x)``, so a
    :class:`LowRankLinear` is a drop-in; fc8 is kept (it is small: K outputs).

    Args:
        model: an :class:`~sppnet.models.SPPNet` (any module with ``nn.Linear``
            attributes ``fc6`` and ``fc7``); not modified.
        rank6: rank of fc6 (e.g. 1024 of 4096), or None to keep fc6.
        rank7: rank of fc7 (e.g. 256 of 4096), or None to keep fc7.

    Returns:
        A deep copy of ``model`` (same mode, dtype and device) with the layers replaced.

    Raises:
        TypeError: ``model`` has no ``nn.Linear`` ``fc6``/``fc7`` to compress (e.g. it
            was compressed already), or a rank is not an int.
        ValueError: a rank outside ``1..min(in, out)`` of its layer.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module (an SPPNet), got {type(model).__name__}")
    for name, rank in (("fc6", rank6), ("fc7", rank7)):
        if rank is None:
            continue
        layer = getattr(model, name, None)
        if not isinstance(layer, nn.Linear):
            raise TypeError(
                f"model.{name} must be an nn.Linear to compress, got {type(layer).__name__}"
            )
        _check_rank(rank, layer, f"rank{name[-1]}")
    out = copy.deepcopy(model)
    if rank6 is not None:
        out.fc6 = truncated_svd_linear(out.fc6, rank6)
    if rank7 is not None:
        out.fc7 = truncated_svd_linear(out.fc7, rank7)
    return out
