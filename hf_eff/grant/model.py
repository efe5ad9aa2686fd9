"""GrantGCN, the paper's learner: kappa-hop GCN layers with graph- or node-level heads."""

from __future__ import annotations

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from torch_geometric.nn import TAGConv, global_mean_pool

from hf_eff.hub.cards import model_card_template


class GrantGCN(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="hf-eff",
    tags=["graph-neural-teaching", "graph-neural-network", "torch_geometric", "grant"],
    model_card_template=model_card_template("grant_model"),
):
    """Each layer maps [X, ÂX, ..., Â^(kappa-1) X] (Â: GCN-normalised adjacency without self
    loops) through a Linear, then BatchNorm, ReLU and dropout. That is exactly PyG's `TAGConv`
    with K = kappa - 1 (one linear map per hop, summed). Graph-level tasks mean-pool the
    nodes before the linear head.

    forward(x, edge_index, batch) returns [num_graphs, out_channels] (level="graph") or
    [num_nodes, out_channels] (level="node").
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int = 64,
        num_layers: int = 3,
        kappa: int = 3,
        level: str = "graph",
        dropout: float = 0.0,
        batch_norm: bool = True,
    ):
        super().__init__()
        if level not in ("graph", "node"):
            raise ValueError(f"level must be 'graph' or 'node', got {level!r}")
        if kappa < 1 or num_layers < 1:
            raise ValueError(f"kappa and num_layers must be >= 1, got kappa={kappa}, num_layers={num_layers}")
        self.level = level
        self.dropout = dropout
        dims = [in_channels] + [hidden_channels] * num_layers
        self.convs = nn.ModuleList(TAGConv(a, b, K=kappa - 1) for a, b in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(
            nn.BatchNorm1d(hidden_channels) if batch_norm else nn.Identity() for _ in range(num_layers)
        )
        self.head = nn.Linear(hidden_channels, out_channels)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = nn.functional.dropout(norm(conv(x, edge_index)).relu(), self.dropout, self.training)
        if self.level == "graph":
            if batch is None:
                batch = x.new_zeros(x.size(0), dtype=torch.long)
            x = global_mean_pool(x, batch)
        return self.head(x)
