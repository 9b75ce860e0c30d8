"""The emotion network in PyTorch (training only), and its export to the folded numpy weights of reference.py."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_agent.emotion_features import N_BANDS, N_INPUTS
from models.emotion.reference import (
    CONVS,
    F32,
    HIDDEN,
    POOLED,
    SPEC_BAND_POOL,
    SPEC_CONVS,
    SPEC_POOLED,
    SPEC_TIME_CONVS,
)

MEMBERS = ("temporal", "spectral")


def build(n_classes: int, dropout: float = 0.3, member: str = "temporal") -> Any:
    """A trainable member of the network (reference.py describes both): convolutions with batch norm."""
    if member not in MEMBERS:
        raise ValueError(f"unknown member {member!r}; one of {MEMBERS}")
    import torch
    from torch import nn

    spectral = member == "spectral"

    class EmotionNet(nn.Module):
        prefix = "spec_" if spectral else ""

        def __init__(self) -> None:
            super().__init__()
            # created in this order (2-D front first), so a seed gives the same initial weights as before
            if spectral:
                c_in = 1
                self.convs2d, self.bns2d = nn.ModuleList(), nn.ModuleList()
                for c_out in SPEC_CONVS:
                    self.convs2d.append(nn.Conv2d(c_in, c_out, 3, padding=1))
                    self.bns2d.append(nn.BatchNorm2d(c_out))
                    c_in = c_out
                c_in = c_in * (N_BANDS // SPEC_BAND_POOL[0] // SPEC_BAND_POOL[1]) + (N_INPUTS - N_BANDS)
            else:
                c_in = N_INPUTS
            self.convs, self.bns = nn.ModuleList(), nn.ModuleList()
            for c_out, k in SPEC_TIME_CONVS if spectral else CONVS:
                self.convs.append(nn.Conv1d(c_in, c_out, k, padding=k // 2))
                self.bns.append(nn.BatchNorm1d(c_out))
                c_in = c_out
            self.dense0 = nn.Linear(2 * c_in, HIDDEN)
            self.dense1 = nn.Linear(HIDDEN, n_classes)
            self.drop = nn.Dropout(dropout)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """x: (n, T, N_INPUTS) -> logits (n, classes)."""
            out: torch.Tensor = self.dense1(self.hidden(x))
            return out

        def hidden(self, x: torch.Tensor) -> torch.Tensor:
            """The 64-d representation the class head reads (a speaker adversary reads it too in training)."""
            if spectral:
                h = spectral_trunk(
                    x, [lambda t, c=c, b=b: b(c(t)) for c, b in zip(self.convs2d, self.bns2d, strict=True)]
                )
            else:
                h = x.transpose(1, 2)
            layers = [lambda t, c=c, b=b: b(c(t)) for c, b in zip(self.convs, self.bns, strict=True)]
            z = pooled_over_time(time_stack(h, layers, SPEC_POOLED if spectral else POOLED))
            hid: torch.Tensor = self.drop(torch.relu(self.dense0(self.drop(z))))
            return hid

    return EmotionNet()


def _normed(convs: Any, bns: Any) -> list[Any]:
    """Each convolution followed by its batch norm, as one callable."""
    return [lambda t, c=c, b=b: b(c(t)) for c, b in zip(convs, bns, strict=True)]


def spectral_trunk(x: Any, convs2d: Any) -> Any:
    """(n, T, N_INPUTS) -> (n, channels x coarse bands + pitch channels, T/2): the spectral member's 2-D part."""
    import torch

    f = torch.nn.functional
    h = x[..., :N_BANDS].transpose(1, 2).unsqueeze(1)  # (n, 1, band, T)
    for i, conv in enumerate(convs2d):
        h = torch.relu(conv(h))
        h = f.max_pool2d(h, (SPEC_BAND_POOL[i], 2 if i == 0 else 1))
    n, c, b, t = h.shape
    pitch = f.avg_pool1d(x[..., N_BANDS:].transpose(1, 2), 2)
    return torch.cat([h.reshape(n, c * b, t), pitch], dim=1)


def time_stack(h: Any, layers: Any, pooled: int) -> Any:
    """(n, channels, T): each layer then ReLU; the first `pooled` are followed by 2x max-pooling in time."""
    import torch

    for i, layer in enumerate(layers):
        h = torch.relu(layer(h))
        if i < pooled:
            h = torch.nn.functional.max_pool1d(h, 2)
    return h


def pooled_over_time(h: Any) -> Any:
    """(n, channels, T) -> (n, 2 x channels): mean and max over time."""
    import torch

    return torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)


def gradient_reversal(x: Any, scale: float) -> Any:
    """Identity forward; gradient times -scale backward (domain-adversarial training, Ganin & Lempitsky 2015)."""
    import torch

    class _Reverse(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
            return t.view_as(t)

        @staticmethod
        def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
            return -scale * g

    return _Reverse.apply(x)  # type: ignore[no-untyped-call]


def folded_weights(net: Any, n_out: int | None = None) -> dict[str, F32]:
    """Batch norm folded into each convolution (eval statistics): the weights reference.forward runs.

    n_out keeps only the first outputs (the shipped classes; auxiliary training classes are dropped, so the
    softmax gives the distribution among the shipped classes).
    """
    p = getattr(net, "prefix", "")
    layers = [(f"conv{i}", c, b) for i, (c, b) in enumerate(zip(net.convs, net.bns, strict=True))]
    if p:
        layers += [(f"conv2d{i}", c, b) for i, (c, b) in enumerate(zip(net.convs2d, net.bns2d, strict=True))]
    w: dict[str, F32] = {}
    for key, conv, bn in layers:
        scale = (bn.weight / (bn.running_var + bn.eps).sqrt()).detach().numpy()
        k = conv.weight.detach().numpy()
        w[f"{p}{key}_w"] = (k * scale.reshape(-1, *([1] * (k.ndim - 1)))).astype(np.float32)
        shift = bn.bias.detach().numpy() - bn.running_mean.numpy() * scale
        w[f"{p}{key}_b"] = (conv.bias.detach().numpy() * scale + shift).astype(np.float32)
    for i, lin in enumerate((net.dense0, net.dense1)):
        w[f"{p}dense{i}_w"] = lin.weight.detach().numpy().T.astype(np.float32).copy()
        w[f"{p}dense{i}_b"] = lin.bias.detach().numpy().astype(np.float32).copy()
    if n_out is not None:
        d, b = w[f"{p}dense1_w"], w[f"{p}dense1_b"]
        w[f"{p}dense1_w"], w[f"{p}dense1_b"] = d[:, :n_out].copy(), b[:n_out].copy()
    return w


def folded_module(w: dict[str, F32]) -> Any:
    """A plain PyTorch module (no batch norm) computing reference.forward from folded weights: what ONNX exports."""
    import torch
    from torch import nn

    from models.emotion.reference import members

    def conv(key: str) -> Any:
        k = torch.from_numpy(w[f"{key}_w"])
        size = int(k.shape[2])  # 2-D kernels are square
        kind: Any = nn.Conv2d if k.ndim == 4 else nn.Conv1d
        layer = kind(k.shape[1], k.shape[0], size, padding=size // 2)
        layer.weight = nn.Parameter(k.clone())
        layer.bias = nn.Parameter(torch.from_numpy(w[f"{key}_b"]).clone())
        return layer

    def dense(key: str) -> Any:
        d = torch.from_numpy(w[f"{key}_w"])
        lin = nn.Linear(d.shape[0], d.shape[1])
        lin.weight = nn.Parameter(d.T.contiguous().clone())
        lin.bias = nn.Parameter(torch.from_numpy(w[f"{key}_b"]).clone())
        return lin

    def head(h: torch.Tensor, dense0: Any, dense1: Any) -> torch.Tensor:
        return torch.log_softmax(dense1(torch.relu(dense0(pooled_over_time(h)))), dim=1)

    class Folded(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            prefixes = members(w)
            self.temporal = "" in prefixes
            self.spectral = "spec_" in prefixes
            if self.temporal:
                self.convs = nn.ModuleList([conv(f"conv{i}") for i in range(len(CONVS))])
                self.dense = nn.ModuleList([dense(f"dense{i}") for i in range(2)])
            if self.spectral:
                self.spec_convs2d = nn.ModuleList([conv(f"spec_conv2d{i}") for i in range(len(SPEC_CONVS))])
                self.spec_convs = nn.ModuleList([conv(f"spec_conv{i}") for i in range(len(SPEC_TIME_CONVS))])
                self.spec_dense = nn.ModuleList([dense(f"spec_dense{i}") for i in range(2)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logp = []
            if self.temporal:
                logp.append(head(time_stack(x.transpose(1, 2), self.convs, POOLED), *self.dense))
            if self.spectral:
                h = time_stack(spectral_trunk(x, self.spec_convs2d), self.spec_convs, SPEC_POOLED)
                logp.append(head(h, *self.spec_dense))
            return torch.softmax(torch.stack(logp).mean(dim=0), dim=1)

    return Folded().eval()
