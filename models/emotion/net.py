"""The emotion network in PyTorch (training only), and its export to the folded numpy weights of reference.py."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_agent.emotion_features import N_BANDS, N_INPUTS
from models.emotion.reference import CONVS, F32, HIDDEN, POOLED, SPEC_BAND_POOL, SPEC_CONVS, SPEC_TIME_CONVS

MEMBERS = ("temporal", "spectral")


def build(n_classes: int, dropout: float = 0.3, member: str = "temporal") -> Any:
    """A trainable member of the network (reference.py describes both)."""
    if member == "spectral":
        return _build_spectral(n_classes, dropout)
    if member != "temporal":
        raise ValueError(f"unknown member {member!r}; one of {MEMBERS}")
    import torch
    from torch import nn

    class EmotionNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            convs, bns = [], []
            c_in = N_INPUTS
            for c_out, k in CONVS:
                convs.append(nn.Conv1d(c_in, c_out, k, padding=k // 2))
                bns.append(nn.BatchNorm1d(c_out))
                c_in = c_out
            self.convs = nn.ModuleList(convs)
            self.bns = nn.ModuleList(bns)
            self.dense0 = nn.Linear(2 * c_in, HIDDEN)
            self.dense1 = nn.Linear(HIDDEN, n_classes)
            self.drop = nn.Dropout(dropout)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """x: (n, T, bands) -> logits (n, classes)."""
            out: torch.Tensor = self.dense1(self.hidden(x))
            return out

        def hidden(self, x: torch.Tensor) -> torch.Tensor:
            """The 64-d representation the class head reads (a speaker adversary reads it too in training)."""
            h = x.transpose(1, 2)
            for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
                h = torch.relu(bn(conv(h)))
                if i < POOLED:
                    h = torch.nn.functional.max_pool1d(h, 2)
            z = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
            hid: torch.Tensor = self.drop(torch.relu(self.dense0(self.drop(z))))
            return hid

    return EmotionNet()


def _build_spectral(n_classes: int, dropout: float) -> Any:
    import torch
    from torch import nn

    class SpectralNet(nn.Module):
        prefix = "spec_"

        def __init__(self) -> None:
            super().__init__()
            c_in = 1
            self.convs2d, self.bns2d = nn.ModuleList(), nn.ModuleList()
            for c_out in SPEC_CONVS:
                self.convs2d.append(nn.Conv2d(c_in, c_out, 3, padding=1))
                self.bns2d.append(nn.BatchNorm2d(c_out))
                c_in = c_out
            c_in = c_in * (N_BANDS // SPEC_BAND_POOL[0] // SPEC_BAND_POOL[1]) + (N_INPUTS - N_BANDS)
            self.convs, self.bns = nn.ModuleList(), nn.ModuleList()
            for c_out, k in SPEC_TIME_CONVS:
                self.convs.append(nn.Conv1d(c_in, c_out, k, padding=k // 2))
                self.bns.append(nn.BatchNorm1d(c_out))
                c_in = c_out
            self.dense0 = nn.Linear(2 * c_in, HIDDEN)
            self.dense1 = nn.Linear(HIDDEN, n_classes)
            self.drop = nn.Dropout(dropout)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.dense1(self.hidden(x))
            return out

        def hidden(self, x: torch.Tensor) -> torch.Tensor:
            h = spectral_trunk(x, [lambda t, c=c, b=b: b(c(t)) for c, b in zip(self.convs2d, self.bns2d, strict=True)])
            for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
                h = torch.relu(bn(conv(h)))
                if i == 0:
                    h = torch.nn.functional.max_pool1d(h, 2)
            z = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
            hid: torch.Tensor = self.drop(torch.relu(self.dense0(self.drop(z))))
            return hid

    return SpectralNet()


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
        size, pad = int(k.shape[2]), int(k.shape[2]) // 2  # square 2-D kernels
        layer: Any = nn.Conv2d(k.shape[1], k.shape[0], size, padding=pad) if k.ndim == 4 else None
        if layer is None:
            layer = nn.Conv1d(k.shape[1], k.shape[0], size, padding=pad)
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
        z = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
        return torch.log_softmax(dense1(torch.relu(dense0(z))), dim=1)

    class Folded(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.prefixes = members(w)
            self.temporal = "" in self.prefixes
            self.spectral = "spec_" in self.prefixes
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
                h = x.transpose(1, 2)
                for i, c in enumerate(self.convs):
                    h = torch.relu(c(h))
                    if i < POOLED:
                        h = torch.nn.functional.max_pool1d(h, 2)
                logp.append(head(h, *self.dense))
            if self.spectral:
                h = spectral_trunk(x, self.spec_convs2d)
                for i, c in enumerate(self.spec_convs):
                    h = torch.relu(c(h))
                    if i == 0:
                        h = torch.nn.functional.max_pool1d(h, 2)
                logp.append(head(h, *self.spec_dense))
            return torch.softmax(torch.stack(logp).mean(dim=0), dim=1)

    return Folded().eval()
