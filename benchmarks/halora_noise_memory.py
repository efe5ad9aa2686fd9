"""Transient memory and time of one RRAM noise redraw (``RRAMNoise.apply`` / ``restore``) on one layer.

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
multiple of the layer's own bytes).

Measured with that command (2048x8192 layer, sigma 0.02, one thread, 2-core machine at load ~2;
redraw = apply + restore, median of 3, CPU time; whole-layer = 55851f6, banded = this version):

    | dtype | mode           | apply peak MB, whole-layer -> banded | restore peak MB   | redraw CPU s |
    | bf16  | tile_additive  | 302.0 (9.00x) -> 79.9 (2.38x)         | 201.3 -> 72.4     | 0.64 -> 0.35 |
    | bf16  | multiplicative | 369.1 (11.0x) -> 74.8 (2.23x)         | 268.4 -> 72.4     | 0.72 -> 0.30 |
    | bf16  | absolute       | 302.0 (9.00x) -> 107.1 (3.19x)        | 201.3 -> 72.4     | 0.71 -> 0.37 |
    | bf16  | stuck_at       | 369.1 (11.0x) -> 80.7 (2.41x)         | 167.8 -> 71.3     | 0.78 -> 0.27 |
    | fp32  | tile_additive  | 234.0 (3.49x) -> 86.5 (1.29x)         | 147.3 -> 71.3     | 0.51 -> 0.30 |
    | fp32  | multiplicative | 268.4 (4.00x) -> 75.2 (1.12x)         | 201.3 -> 71.3     | 0.65 -> 0.21 |
    | fp32  | absolute       | 320.4 (4.77x) -> 121.0 (1.80x)        | 181.9 -> 71.3     | 0.55 -> 0.35 |
    | fp32  | stuck_at       | 302.0 (4.50x) -> 79.3 (1.18x)         | 69.8 -> 67.2      | 0.64 -> 0.27 |

What remains is the float32 draw itself (67.1 MB: one generator call per layer), the kept fix-ups
(6.4 MB for bf16 tile_additive; 33-48 MB for absolute noise, whose rounding inverts least often)
and about 5 MB of band temporaries. A whole SmolLM2-shaped model (30 blocks, float32) redraws in
1.7 s of CPU either way.
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


def measure(module, shape: tuple[int, int], dtype: torch.dtype, mode: str, sigma: float, repeats: int) -> dict:
    torch.manual_seed(0)
    layer = nn.Linear(shape[1], shape[0], bias=False).to(dtype).requires_grad_(False)
    layer.weight.normal_(0, 0.02)
    clean = layer.weight.clone()
    noise = module.RRAMNoise(nn.Sequential(layer), sigma=sigma, mode=mode, target_modules=["0"])
    apply_peak, kept = peak_and_kept_bytes(lambda: noise.apply(seed=0))
    restore_peak, _ = peak_and_kept_bytes(noise.restore)
    if not torch.equal(layer.weight.view(torch.uint8), clean.view(torch.uint8)):
        raise RuntimeError(f"{mode} {dtype}: restore did not give the clean weights back")
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        noise.apply(seed=1)
        noise.restore()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    layer_bytes = layer.weight.numel() * layer.weight.element_size()
    return {"layer_bytes": layer_bytes, "apply_peak_bytes": apply_peak, "restore_peak_bytes": restore_peak,
            "kept_bytes": kept, "apply_peak_x_layer": apply_peak / layer_bytes,
            "restore_peak_x_layer": restore_peak / layer_bytes,
            "redraw_wall_s": statistics.median(walls), "redraw_cpu_s": statistics.median(cpus)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="halora_noise_memory")
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--cols", type=int, default=8192)
    parser.add_argument("--sigma", type=float, default=0.02)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare_with", default=None, help="Path of another noise.py to measure beside the current one.")
    args = parser.parse_args()
    torch.set_num_threads(1)

    versions = {"current": current_noise}
    if args.compare_with:
        versions["compared"] = load_noise_module(args.compare_with)
    shape = (args.rows, args.cols)
    results = []
    for dtype_name in args.dtypes:
        for mode in args.modes:
            for version, module in versions.items():
                row = {"version": version, "dtype": dtype_name, "mode": mode, "shape": list(shape)}
                row.update(measure(module, shape, DTYPES[dtype_name], mode, args.sigma, args.repeats))
                results.append(row)

    mb = 1e6
    print(f"layer {shape[0]}x{shape[1]}, sigma {args.sigma}, {torch.get_num_threads()} thread(s)")
    print("| dtype | mode | version | apply peak MB (x layer) | restore peak MB (x layer) | kept MB | redraw wall s | redraw CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['dtype']} | {r['mode']} | {r['version']} | {r['apply_peak_bytes'] / mb:.1f} ({r['apply_peak_x_layer']:.2f}) "
              f"| {r['restore_peak_bytes'] / mb:.1f} ({r['restore_peak_x_layer']:.2f}) | {r['kept_bytes'] / mb:.2f} "
              f"| {r['redraw_wall_s']:.3f} | {r['redraw_cpu_s']:.3f} |")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "halora_noise_memory.json").write_text(json.dumps(
        {"shape": list(shape), "sigma": args.sigma, "compare_with": args.compare_with, "results": results}, indent=2))
    print(f"wrote {out / 'halora_noise_memory.json'}")


if __name__ == "__main__":
    main()
