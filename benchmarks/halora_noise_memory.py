"""Transient memory and time of one RRAM noise redraw (``RRAMNoise.apply`` / ``restore``) of a model of
``--layers`` equal layers (2 by default: what one layer's work still holds while the next layer allocates
counts, as in a real model).

The peak is read from ``torch.profiler`` (``profile_memory=True``): every CPU allocation and free of
a tensor is a ``[memory]`` event with its signed size; their running sum in time order, from zero when ``apply``
(or ``restore``) starts, peaks at the most bytes the call held at once beyond the model (its
temporaries plus what it keeps: tile scales and the exact fix-ups, reported as ``kept``). Times are
the median of ``--repeats`` runs without the profiler, wall clock and process CPU time (one thread).

``--compare_with FILE`` measures another version of ``hf_eff/halora/noise.py`` beside the current
one, e.g. the one before the banded redraw:

    git show 55851f6:hf_eff/halora/noise.py > /tmp/noise_whole_layer.py
    OMP_NUM_THREADS=1 python benchmarks/halora_noise_memory.py --compare_with /tmp/noise_whole_layer.py

writes ``halora_noise_memory.json`` into ``--output_dir`` and prints the table (peak in MB and as a
multiple of one layer's bytes).

Measured with that command (a model of two 2048x8192 layers, sigma 0.02, one thread, 2-core machine at
load ~1-2; peaks as a multiple of ONE layer's bytes; redraw = apply + restore of both layers, median of
3, CPU time; whole-layer = 55851f6, banded = this version: bands of >= 2**22 elements, <= 4 per layer):

    | dtype | mode           | apply peak MB, whole-layer -> banded | restore peak MB   | redraw CPU s |
    | bf16  | tile_additive  | 350.4 (10.4x) -> 120.2 (3.58x)        | 234.9 -> 107.5    | 1.33 -> 0.73 |
    | bf16  | multiplicative | 405.9 (12.1x) -> 111.5 (3.32x)        | 302.0 -> 108.7    | 1.59 -> 0.66 |
    | bf16  | absolute       | 413.3 (12.3x) -> 167.4 (4.99x)        | 234.9 -> 100.7    | 1.32 -> 0.86 |
    | bf16  | stuck_at       | 441.0 (13.1x) -> 129.4 (3.86x)        | 201.3 -> 100.2    | 1.38 -> 0.61 |
    | fp32  | tile_additive  | 361.7 (5.39x) -> 131.0 (1.95x)        | 201.3 -> 97.4     | 1.08 -> 0.69 |
    | fp32  | multiplicative | 339.1 (5.05x) -> 108.4 (1.62x)        | 268.4 -> 100.2    | 1.20 -> 0.68 |
    | fp32  | absolute       | 414.1 (6.17x) -> 207.9 (3.10x)        | 201.3 -> 95.8     | 1.03 -> 0.79 |
    | fp32  | stuck_at       | 374.5 (5.58x) -> 113.8 (1.70x)        | 134.2 -> 67.8     | 1.19 -> 0.71 |

Since then stuck_at's restore makes no draw (its fix-ups hold every stuck cell): measured with
``--modes stuck_at --compare_with`` the version before, restore peak bf16 100.2 -> 41.4 MB, fp32
67.8 -> 0.7 MB, redraw CPU 0.71 -> 0.58 s (bf16) and 0.68 -> 0.53 s (fp32).

What remains is one layer's float32 draw (67.1 MB: one generator call per layer; the previous layer's
is freed first), the fix-ups kept so far (both layers': 2.8-13 MB, 67-95 MB for absolute noise, whose
rounding inverts least often) and up to about 3.5 float32 band-sized temporaries (a band here is a
quarter layer, 16.8 MB float32). The bands of c65c850 (2**18 elements, at least 64 rows) peaked at
4.1-5.1x (bf16) and 2.0-2.8x (fp32) on this model, with 64 host synchronisations per layer of this size
(32 bands of 64 rows, two reads each) instead of 5.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from hf_eff.halora import noise as current_noise

MODES = ("tile_additive", "multiplicative", "absolute", "stuck_at")
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def load_noise_module(path: str):
    spec = importlib.util.spec_from_file_location("compared_noise", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def peak_and_kept_bytes(call) -> tuple[int, int]:
    """(peak, final) running sum of the CPU allocations ``call`` makes."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    # the raw events keep each allocation and free with its time; prof.events() folds the allocations
    # into the ops that made them
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    running = peak = 0
    for event in events:
        running += event.nbytes()
        peak = max(peak, running)
    return peak, running


def measure(module, shape: tuple[int, int], n_layers: int, dtype: torch.dtype, mode: str, sigma: float,
            repeats: int) -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(*(nn.Linear(shape[1], shape[0], bias=False) for _ in range(n_layers)))
    model.to(dtype).requires_grad_(False)
    for layer in model:
        layer.weight.normal_(0, 0.02)
    clean = [layer.weight.clone() for layer in model]
    noise = module.RRAMNoise(model, sigma=sigma, mode=mode, target_modules=[str(i) for i in range(n_layers)])
    apply_peak, kept = peak_and_kept_bytes(lambda: noise.apply(seed=0))
    restore_peak, _ = peak_and_kept_bytes(noise.restore)
    if not all(torch.equal(layer.weight.view(torch.uint8), c.view(torch.uint8)) for layer, c in zip(model, clean)):
        raise RuntimeError(f"{mode} {dtype}: restore did not give the clean weights back")
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        noise.apply(seed=1)
        noise.restore()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    layer_bytes = model[0].weight.numel() * model[0].weight.element_size()  # one layer's
    return {"layer_bytes": layer_bytes, "apply_peak_bytes": apply_peak, "restore_peak_bytes": restore_peak,
            "kept_bytes": kept, "apply_peak_x_layer": apply_peak / layer_bytes,
            "restore_peak_x_layer": restore_peak / layer_bytes,
            "redraw_wall_s": statistics.median(walls), "redraw_cpu_s": statistics.median(cpus)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="halora_noise_memory")
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--cols", type=int, default=8192)
    parser.add_argument("--layers", type=int, default=2, help="Layers of the model (at least 2: see above).")
    parser.add_argument("--sigma", type=float, default=0.02)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare_with", default=None, help="Path of another noise.py to measure beside the current one.")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    if args.layers < 2:
        parser.error("--layers must be at least 2: one layer alone hides what a model's next layer adds to the peak")
    versions = {"current": current_noise}
    if args.compare_with:
        versions["compared"] = load_noise_module(args.compare_with)
    shape = (args.rows, args.cols)
    results = []
    for dtype_name in args.dtypes:
        for mode in args.modes:
            for version, module in versions.items():
                row = {"version": version, "dtype": dtype_name, "mode": mode, "shape": list(shape), "layers": args.layers}
                row.update(measure(module, shape, args.layers, DTYPES[dtype_name], mode, args.sigma, args.repeats))
                results.append(row)

    mb = 1e6
    print(f"model of {args.layers} layers of {shape[0]}x{shape[1]}, sigma {args.sigma}, {torch.get_num_threads()} thread(s); "
          "peaks also as a multiple of ONE layer's bytes; kept and times for the whole model")
    print("| dtype | mode | version | apply peak MB (x layer) | restore peak MB (x layer) | kept MB | redraw wall s | redraw CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['dtype']} | {r['mode']} | {r['version']} | {r['apply_peak_bytes'] / mb:.1f} ({r['apply_peak_x_layer']:.2f}) "
              f"| {r['restore_peak_bytes'] / mb:.1f} ({r['restore_peak_x_layer']:.2f}) | {r['kept_bytes'] / mb:.2f} "
              f"| {r['redraw_wall_s']:.3f} | {r['redraw_cpu_s']:.3f} |")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "halora_noise_memory.json").write_text(json.dumps(
        {"shape": list(shape), "layers": args.layers, "sigma": args.sigma, "compare_with": args.compare_with, "results": results}, indent=2))
    print(f"wrote {out / 'halora_noise_memory.json'}")


if __name__ == "__main__":
    main()
