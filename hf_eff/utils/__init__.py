"""Small shared utilities of the examples: launch checks (distributed.py), recipe files with
overriding flags (recipes.py), the closing all_results.json (results.py), and which metrics are
errors for `load_best_model_at_end` (best_model.py), loaders that pin memory only for CUDA (pinning.py),
and what an evaluation-only run (`--do_train False`) refuses (evaluation_only.py)."""
