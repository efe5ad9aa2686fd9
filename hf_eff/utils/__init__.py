"""Small shared utilities of the examples: launch checks (distributed.py), recipe files with
overriding flags (recipes.py), the closing all_results.json (results.py), which metrics are
errors for `load_best_model_at_end` (best_model.py), loaders that pin memory only for CUDA (pinning.py),
what an evaluation-only run (`--do_train False`) refuses (evaluation_only.py), what a training run refuses to
write over (output_dir.py) or resume from (resume.py), saved datasets with a split of no rows (saved_data.py),
hf-eff's cache folder (cache.py), and the trainers' named stops of a diverged run or a damaged checkpoint
(training_failures.py)."""
