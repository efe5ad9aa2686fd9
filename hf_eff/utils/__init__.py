"""Small shared utilities of the examples: launch checks (distributed.py), recipe files with
overriding flags (recipes.py), the closing all_results.json (results.py), and which metrics are
errors for `load_best_model_at_end` (best_model.py), and loaders that pin memory only for CUDA (pinning.py)."""
