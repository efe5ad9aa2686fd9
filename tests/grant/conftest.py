import datasets
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_EFF_CACHE", str(tmp_path / "cache"))


def random_graphs(num_graphs: int, task: str, feature_dim: int = 6, seed: int = 0, min_nodes: int = 1, max_nodes: int = 8):
    """Small random graphs with labels for `task` (the first graph has no edges)."""
    rng = np.random.default_rng(seed)
    rows = {"x": [], "edge_index": [], "y": [], "num_nodes": []}
    for i in range(num_graphs):
        n = int(rng.integers(min_nodes, max_nodes + 1))
        num_edges = 0 if i == 0 else int(rng.integers(0, 2 * n + 1))
        rows["x"].append(rng.normal(size=(n, feature_dim)).astype("float32"))
        rows["edge_index"].append(rng.integers(0, n, size=(2, num_edges)))
        if task == "graph_regression":
            rows["y"].append([float(rows["x"][-1][:, 0].mean())])
        elif task == "graph_classification":
            rows["y"].append(int(rows["x"][-1][:, 0].mean() > 0))
        elif task == "graph_multilabel":  # 3 binary targets; target 0 always labelled, 1 and 2 missing (NaN) at 40%
            labels = (rows["x"][-1][:, :3].mean(axis=0) > 0).astype(float)
            labels[1:][rng.random(2) < 0.4] = float("nan")
            rows["y"].append(labels.tolist())
        elif task == "node_regression":
            rows["y"].append(rows["x"][-1][:, 0].tolist())
        else:
            rows["y"].append((rows["x"][-1][:, :3].argmax(axis=1)).tolist())
        rows["num_nodes"].append(n)
    return datasets.Dataset.from_dict(rows)


@pytest.fixture
def make_graphs():
    return random_graphs
