"""The timings transformers reports with every evaluation, beside a trainer's own metrics."""

# transformers.trainer_utils.speed_metrics' names, each under the split's prefix (eval_runtime, ...).
SPEED_METRICS = ("runtime", "samples_per_second", "steps_per_second")
