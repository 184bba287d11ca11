"""G-TAD's graph blocks (Xu et al., CVPR 2020): the k-NN semantic graph and GCNeXt.

A snippet sequence is a graph whose nodes are the snippets, with two kinds of edges:
temporal edges (each snippet to its neighbours in time, a grouped 1-D convolution) and
semantic edges (each snippet to its ``k`` nearest snippets in feature space, found anew on
every block's input: a dynamic graph). `GCNeXt` runs both branches in the ResNeXt layout
(1x1 -> grouped conv of ``groups`` x ``width_group`` channels -> 1x1) and adds them to the
identity. Release counterpart: ``knn``, ``get_graph_feature`` and ``GCNeXt`` of
``gtad_lib/models.py`` (frostinassiky/gtad); the pairwise distances are computed with the
same expression, so that the neighbours (a discrete choice) are the release's.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GCNeXt", "gather_neighbours", "knn_indices"]


def knn_indices(x: torch.Tensor, k: int) -> torch.Tensor:
    """``B x N x k`` indices of the `k` nearest nodes of every node of ``x`` (``B x C x N``),
    by Euclidean distance, the node itself included (distance 0)."""
    if k > x.shape[-1]:
        raise ValueError(f"{k} nearest neighbours asked of a graph of {x.shape[-1]} nodes")
    inner = -2 * torch.matmul(x.transpose(2, 1), x)
    squares = torch.sum(x ** 2, dim=1, keepdim=True)
    neg_distance = -squares - inner - squares.transpose(2, 1)
    return neg_distance.topk(k=k, dim=-1)[1]


def gather_neighbours(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The features of every node's neighbours: ``B x C x N`` features and ``B x N x k``
    indices -> ``B x C x N x k``."""
    batch = torch.arange(x.shape[0], device=x.device).view(-1, 1, 1)
    return x.transpose(1, 2)[batch, index].permute(0, 3, 1, 2)


class GCNeXt(nn.Module):
    """One GCNeXt block, ``B x C_in x N`` -> ``B x C_out x N`` (``C_in == C_out``: the
    residual): ``relu(temporal(x) + x + max_k semantic([x_neighbour, x]))``. ``forward``
    also returns the k-NN indices it used (G-TAD's "all layers" context reads them)."""

    def __init__(self, channels: int, k: int = 3, groups: int = 32, width_group: int = 4):
        super().__init__()
        self.k = k
        width = width_group * groups
        self.tconvs = nn.Sequential(
            nn.Conv1d(channels, width, kernel_size=1), nn.ReLU(True),
            nn.Conv1d(width, width, kernel_size=3, groups=groups, padding=1), nn.ReLU(True),
            nn.Conv1d(width, channels, kernel_size=1),
        )
        self.sconvs = nn.Sequential(
            nn.Conv2d(channels * 2, width, kernel_size=1), nn.ReLU(True),
            nn.Conv2d(width, width, kernel_size=1, groups=groups), nn.ReLU(True),
            nn.Conv2d(width, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        temporal = self.tconvs(x)
        index = knn_indices(x, self.k)
        neighbours = gather_neighbours(x, index)
        edges = torch.cat((neighbours, x.unsqueeze(-1).expand_as(neighbours)), dim=1)
        semantic = self.sconvs(edges).max(dim=-1)[0]
        return torch.relu(temporal + x + semantic), index
