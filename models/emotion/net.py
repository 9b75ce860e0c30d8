"""The emotion network in PyTorch (training only), and its export to the folded numpy weights of reference.py."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_agent.emotion_features import N_INPUTS
from models.emotion.reference import CONVS, F32, HIDDEN, POOLED


def build(n_classes: int, dropout: float = 0.3) -> Any:
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
    w: dict[str, F32] = {}
    for i, (conv, bn) in enumerate(zip(net.convs, net.bns, strict=True)):
        scale = (bn.weight / (bn.running_var + bn.eps).sqrt()).detach().numpy()
        w[f"conv{i}_w"] = (conv.weight.detach().numpy() * scale[:, None, None]).astype(np.float32)
        shift = bn.bias.detach().numpy() - bn.running_mean.numpy() * scale
        w[f"conv{i}_b"] = (conv.bias.detach().numpy() * scale + shift).astype(np.float32)
    for i, lin in enumerate((net.dense0, net.dense1)):
        w[f"dense{i}_w"] = lin.weight.detach().numpy().T.astype(np.float32).copy()
        w[f"dense{i}_b"] = lin.bias.detach().numpy().astype(np.float32).copy()
    if n_out is not None:
        w["dense1_w"], w["dense1_b"] = w["dense1_w"][:, :n_out].copy(), w["dense1_b"][:n_out].copy()
    return w


def folded_module(w: dict[str, F32]) -> Any:
    """A plain PyTorch module (no batch norm) computing reference.forward from folded weights: what ONNX exports."""
    import torch
    from torch import nn

    class Folded(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.convs = nn.ModuleList()
            for i in range(len(CONVS)):
                k = torch.from_numpy(w[f"conv{i}_w"])
                conv = nn.Conv1d(k.shape[1], k.shape[0], k.shape[2], padding=k.shape[2] // 2)
                conv.weight = nn.Parameter(k.clone())
                conv.bias = nn.Parameter(torch.from_numpy(w[f"conv{i}_b"]).clone())
                self.convs.append(conv)
            self.dense = nn.ModuleList()
            for i in range(2):
                d = torch.from_numpy(w[f"dense{i}_w"])
                lin = nn.Linear(d.shape[0], d.shape[1])
                lin.weight = nn.Parameter(d.T.contiguous().clone())
                lin.bias = nn.Parameter(torch.from_numpy(w[f"dense{i}_b"]).clone())
                self.dense.append(lin)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = x.transpose(1, 2)
            for i, conv in enumerate(self.convs):
                h = torch.relu(conv(h))
                if i < POOLED:
                    h = torch.nn.functional.max_pool1d(h, 2)
            z = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
            return torch.softmax(self.dense[1](torch.relu(self.dense[0](z))), dim=1)

    return Folded().eval()
