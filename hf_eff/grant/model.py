"""GrantGCN, the paper's learner: kappa-hop GCN layers with graph- or node-level heads."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin, constants, hf_hub_download
from huggingface_hub.errors import RemoteEntryNotFoundError
from safetensors import safe_open
from torch import nn
from torch_geometric.nn import TAGConv, global_mean_pool

from hf_eff.grant.tasks import GraphTask
from hf_eff.hub.cards import model_card_template
from hf_eff.hub.push import PushesWithoutLocalPaths
from hf_eff.hub.sources import check_weights_file, last_checkpoint_hint, naming_missing_folder


class GrantGCN(
    nn.Module,
    PushesWithoutLocalPaths,
    PyTorchModelHubMixin,
    library_name="hf-eff",
    tags=["graph-neural-teaching", "graph-neural-network", "torch_geometric", "grant"],
    model_card_template=model_card_template("grant_model"),
):
    """Each layer maps [X, ÂX, ..., Â^(kappa-1) X] (Â: GCN-normalised adjacency without self
    loops) through a Linear, then BatchNorm, ReLU and dropout. That is exactly PyG's `TAGConv`
    with K = kappa - 1 (one linear map per hop, summed). Graph-level tasks mean-pool the
    nodes before the linear head. A training batch of a single node (one single-atom molecule)
    is normalised with BatchNorm's running statistics, as PyG's
    `BatchNorm(allow_single_element=True)` does, instead of failing.

    forward(x, edge_index, batch) returns [num_graphs, out_channels] (level="graph") or
    [num_nodes, out_channels] (level="node"). `level` defaults to the level of `task` (so
    `task="node_classification"` alone builds a node-level model), else to "graph". A classifier may carry `class_names` (output i
    is class_names[i]), a regression or multilabel model `target_names` (output i predicts
    target_names[i], e.g. a CSV's target columns); they are saved in config.json, as is `task`, the task kind the model is
    built for (examples/grant_train.py records it), by which a loaded model is checked against
    new data: its level tells graph from node outputs, not regression from classification.
    `data_split` is the example's record of how its training run split the data (seed, fractions,
    data flags), by which an evaluation tells whether its test graphs were held out. config.json
    saves the `task` and `data_split` the model has when saved, so that fine-tuning a loaded model
    records its own.

    A regression model may carry `target_mean` and `target_std` (one per output, e.g. each target's
    mean and standard deviation over the training graphs): its head then predicts standardised
    targets, which forward maps back to the targets' units (output * target_std + target_mean), and
    `GraNTTrainer` computes the loss and the teacher's scores on errors divided by `target_std`, so
    that targets of very different scales weigh alike (else the largest decides both alone).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int = 64,
        num_layers: int = 3,
        kappa: int = 3,
        level: str | None = None,
        dropout: float = 0.0,
        batch_norm: bool = True,
        class_names: list[str] | None = None,
        task: str | None = None,
        target_names: list[str] | None = None,
        data_split: dict | None = None,
        target_mean: list[float] | None = None,
        target_std: list[float] | None = None,
    ):
        super().__init__()
        if level is None:
            level = "graph" if task is None else GraphTask(task).level
        if level not in ("graph", "node"):
            raise ValueError(f"level must be 'graph' or 'node', got {level!r}")
        if class_names is not None and len(class_names) != out_channels:
            raise ValueError(f"class_names has {len(class_names)} names for out_channels={out_channels} classes")
        if target_names is not None:
            if class_names is not None or (task is not None and GraphTask(task).is_classification):
                raise ValueError("target_names name regression or multilabel outputs; a classifier's outputs are its "
                                 "class_names")
            if len(target_names) != out_channels:
                raise ValueError(f"target_names has {len(target_names)} names for out_channels={out_channels} outputs")
        if task is not None and GraphTask(task).level != level:
            raise ValueError(f"task {task!r} is {GraphTask(task).level}-level, but level={level!r}")
        self.task, self.data_split = task, data_split
        # saved in config.json with the other arguments: output i of a classifier is class_names[i]
        self.class_names = None if class_names is None else [str(name) for name in class_names]
        self.target_names = None if target_names is None else [str(name) for name in target_names]
        for kind, names in (("class_names", self.class_names), ("target_names", self.target_names)):
            repeated = sorted({name for name in names or [] if names.count(name) > 1})
            if repeated:  # each names one output: a prediction table would have one column for both
                raise ValueError(f"{kind} name {repeated} more than once: each output needs its own name")
        self.target_mean, self.target_std = _standardisation(target_mean, target_std, out_channels, task, class_names)
        if kappa < 1 or num_layers < 1:
            raise ValueError(f"kappa and num_layers must be >= 1, got kappa={kappa}, num_layers={num_layers}")
        if hidden_channels < 1:  # PyG reads a width <= 0 as "infer it lazily" (0) or fails on a negative size
            raise ValueError(f"hidden_channels (the width of every GCN layer) must be >= 1, got {hidden_channels}")
        self.level = level
        self.dropout = dropout
        # as config.json has them: a loaded model tells its architecture (GraNTTrainer checks in_channels against the data)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.hidden_channels, self.num_layers, self.kappa, self.batch_norm = hidden_channels, num_layers, kappa, batch_norm
        dims = [in_channels] + [hidden_channels] * num_layers
        self.convs = nn.ModuleList(TAGConv(a, b, K=kappa - 1) for a, b in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(
            nn.BatchNorm1d(hidden_channels) if batch_norm else nn.Identity() for _ in range(num_layers)
        )
        self.head = nn.Linear(hidden_channels, out_channels)
        if self.target_std is not None:  # not saved with the weights: config.json holds them
            self.register_buffer("_target_mean", torch.tensor(self.target_mean), persistent=False)
            self.register_buffer("_target_std", torch.tensor(self.target_std), persistent=False)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, force_download: bool = False,
                        token: str | bool | None = None, cache_dir: str | Path | None = None,
                        local_files_only: bool = False, revision: str | None = None, strict: bool = True,
                        **model_kwargs) -> GrantGCN:
        """`PyTorchModelHubMixin.from_pretrained` (a local folder or a Hub repo id, its keyword arguments, which
        go to the download unchanged; `model_kwargs` go to the mixin: `map_location`, or `__init__` arguments
        that replace config.json's), with errors that name the folder or repo when it holds no GrantGCN.
        Weights load strictly unless `strict=False` is given: huggingface_hub's default would leave the layers
        of a GrantGCN at random when the file holds another model's weights."""
        with naming_missing_folder("cannot load a GrantGCN", pretrained_model_name_or_path):
            return super().from_pretrained(pretrained_model_name_or_path, force_download=force_download, token=token,
                                           cache_dir=cache_dir, local_files_only=local_files_only, revision=revision,
                                           strict=strict, **model_kwargs)

    def save_pretrained(self, save_directory, *, config: dict | None = None, **kwargs):
        """`PyTorchModelHubMixin.save_pretrained`; config.json has the model's current `task` and `data_split`
        (the mixin's config holds the values it was built with: a model saved before `task` was recorded has none)
        and its level even when the level came from the task (the mixin's config would hold None)."""
        if config is None:
            config = {**self._hub_mixin_config, "level": self.level, "task": self.task, "data_split": self.data_split}
        return super().save_pretrained(save_directory, config=config, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, config: dict | None = None, **kwargs) -> GrantGCN:
        # huggingface_hub goes on without config.json (a folder or repo saved by another model, or a
        # Hub repo it could not reach), which would end in "__init__() missing 2 required arguments"
        missing = [name for name in ("in_channels", "out_channels") if name not in kwargs]
        if missing:
            raise _not_a_grantgcn(model_id, config, missing, kwargs)
        return super()._from_pretrained(model_id=model_id, **kwargs)

    @classmethod
    def _load_as_safetensor(cls, model: GrantGCN, model_file: str, map_location: str, strict: bool) -> GrantGCN:
        check_weights_file(model_file, "GrantGCN")
        # safetensors' own error would name neither the file nor the model class that saved other weights
        if strict:
            with safe_open(model_file, framework="pt") as weights:
                saved = set(weights.keys())
            expected = set(model.state_dict())
            if saved != expected:
                raise ValueError(
                    f"{model_file} holds no GrantGCN weights (a model of another class, saved with the same "
                    f"{constants.CONFIG_NAME} keys?): it lacks {sorted(expected - saved)[:4]} and has "
                    f"{sorted(saved - expected)[:4]}; load it with the class that saved it"
                )
        return super()._load_as_safetensor(model, model_file, map_location, strict)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = nn.functional.dropout(self._normalize(norm, conv(x, edge_index)).relu(), self.dropout, self.training)
        if self.level == "graph":
            if batch is None:
                batch = x.new_zeros(x.size(0), dtype=torch.long)
            x = global_mean_pool(x, batch)
        if self.target_std is None:
            return self.head(x)
        return self.head(x) * self._target_std + self._target_mean

    def _normalize(self, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        # BatchNorm has no batch statistics of a single node (a training batch of one single-atom molecule):
        # it normalises that node with the running ones, as PyG's BatchNorm(allow_single_element=True) does
        if self.training and x.size(0) == 1 and isinstance(norm, nn.BatchNorm1d):
            return nn.functional.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                                             training=False, eps=norm.eps)
        return norm(x)


def _standardisation(mean: list[float] | None, std: list[float] | None, outputs: int, task: str | None,
                     class_names: list[str] | None) -> tuple[list[float] | None, list[float] | None]:
    """`target_mean` and `target_std` as floats, after checking that they fit a regression model's outputs."""
    if mean is None and std is None:
        return None, None
    if mean is None or std is None:
        raise ValueError("target_mean and target_std standardise the targets together: give both or neither")
    if class_names is not None or (task is not None and not task.endswith("regression")):
        raise ValueError(f"target_mean and target_std standardise regression targets; the model is for "
                         f"{task or 'classification'}")
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    if len(mean) != outputs or len(std) != outputs:
        raise ValueError(f"target_mean has {len(mean)} and target_std {len(std)} values for out_channels={outputs} "
                         "outputs: one per target")
    if not all(math.isfinite(v) for v in mean + std) or min(std) <= 0:
        raise ValueError(f"target_std needs finite standard deviations above 0 (and target_mean finite means), got "
                         f"target_std={std}, target_mean={mean}")
    return mean, std


def _not_a_grantgcn(model_id: str, config: dict | None, missing: list[str], hub_kwargs: dict) -> Exception:
    where = f"the folder {model_id}" if os.path.isdir(model_id) else f"the Hub repo {model_id}"
    if config is not None:
        return ValueError(
            f"{where} holds no GrantGCN: its {constants.CONFIG_NAME} has no {missing} (its keys: {sorted(config)}); "
            "it was saved by another model"
        )
    if os.path.isdir(model_id):
        return ValueError(
            f"{where} holds no GrantGCN: it has no {constants.CONFIG_NAME} (GrantGCN.save_pretrained and "
            "GraNTTrainer.save_model write one)" + last_checkpoint_hint(model_id)
        )
    # huggingface_hub only logged why config.json could not be fetched: ask again, so that a
    # missing or private repo, or an unreachable Hub, raises its own error here
    download = {name: hub_kwargs[name] for name in ("revision", "cache_dir", "force_download", "token", "local_files_only")}
    try:
        hf_hub_download(model_id, constants.CONFIG_NAME, **download)
    except RemoteEntryNotFoundError as error:
        return ValueError(f"{where} holds no GrantGCN: it has no {constants.CONFIG_NAME} ({error})")
    # fetched now: the first try failed on something transient (the network, a rate limit)
    return OSError(f"{constants.CONFIG_NAME} of {where} could not be fetched while loading (a transient Hub or "
                   "network failure); it can be now: load again")
