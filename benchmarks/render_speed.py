"""Forward + backward time and peak memory of `hf_eff.splat.rendering.rasterize`.

Renders N random Gaussians (a cube of side 2 seen from distance 3, world scales 0.01-0.04,
opacities 0.1-0.9) into one square image and back-propagates an L1 loss, for each size in
--num_gaussians x --resolutions, on the CPU backend and, when CUDA is available, on gsplat. On the CPU
each configuration runs in a fresh process, whose peak resident set above the inputs is its peak
memory; on CUDA one process runs them all, and the peak is max_memory_allocated, reset per
configuration. "cpu s" is process CPU time (all threads), steadier than wall time on a shared
machine. Prints a table and writes JSON (row by row).

    OMP_NUM_THREADS=2 python benchmarks/render_speed.py --quick
    python benchmarks/render_speed.py --num_gaussians 10000 --resolutions 256 --repeats 5

gsplat 1.5.3 on an NVIDIA H200 (2026-11-27; torch 2.11.0+cu130, JIT-built for sm_90 in 59 s with
MAX_JOBS=16; `--backends gsplat --repeats 5`), forward + backward, median (min) ms and peak MiB:

| N, res | 128 | 256 | 512 |
|---|---|---|---|
| 10k  | 1.80 (1.64), 5.1 MiB  | 1.91 (1.68), 7.7 MiB  | 2.11 (1.80), 19.0 MiB |
| 50k  | 2.11 (2.08), 24.4 MiB | 2.04 (1.89), 26.6 MiB | 2.08 (1.90), 38.9 MiB |
| 100k | 1.87 (1.82), 51.1 MiB | 1.83 (1.72), 53.3 MiB | 1.88 (1.85), 65.5 MiB |

About 2 ms whatever the size: at these sizes the GPU waits on kernel launches and Python, not on
arithmetic. The CPU backend on that machine's CPU (2 threads, beside a GPU training run): 10k at 128
0.072 s, at 256 0.159 s (the 2-core target: at most 0.3 s at 256).
"""

import argparse
import json
import math
import multiprocessing
import os
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from hf_eff.splat.rendering import rasterize


def benchmark_scene(num_gaussians: int, resolution: int, device: str, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    means = torch.rand(num_gaussians, 3, generator=generator) * 2 - 1
    quats = torch.randn(num_gaussians, 4, generator=generator)
    log_scales = torch.empty(num_gaussians, 3).uniform_(
        math.log(0.01), math.log(0.04), generator=generator
    )
    opacities = torch.empty(num_gaussians).uniform_(0.1, 0.9, generator=generator)
    colors = torch.rand(num_gaussians, 3, generator=generator)
    viewmat = torch.eye(4)
    viewmat[2, 3] = 3.0
    K = torch.tensor(
        [[resolution, 0.0, resolution / 2], [0.0, resolution, resolution / 2], [0.0, 0.0, 1.0]]
    )
    tensors = [means, quats, log_scales, opacities, colors, viewmat[None], K[None]]
    return [t.to(device) for t in tensors]


def forward_backward(inputs, resolution, backend):
    means, quats, log_scales, opacities, colors, viewmats, Ks = inputs
    leaves = [
        t.detach().clone().requires_grad_() for t in (means, quats, log_scales, opacities, colors)
    ]
    render, _, info = rasterize(
        leaves[0],
        leaves[1],
        leaves[2].exp(),
        leaves[3],
        leaves[4],
        viewmats,
        Ks,
        resolution,
        resolution,
        backend=backend,
    )
    render.abs().mean().backward()
    return info


def measure(num_gaussians, resolution, backend, repeats):
    """On the CPU, runs in a fresh process, so that ru_maxrss is this configuration's own peak."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    device = "cuda" if backend == "gsplat" else "cpu"
    # A tiny render first loads and initialises everything (gsplat's JIT on CUDA) outside the peak.
    forward_backward(benchmark_scene(16, 32, device), 32, backend)
    inputs = benchmark_scene(num_gaussians, resolution, device)
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    info = forward_backward(inputs, resolution, backend)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        forward_backward(inputs, resolution, backend)
        if device == "cuda":
            torch.cuda.synchronize()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    if device == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kib) / 1024
    return {
        "backend": backend,
        "device": torch.cuda.get_device_name()
        if device == "cuda"
        else f"cpu ({os.cpu_count()} cores)",
        "threads": torch.get_num_threads(),
        "num_gaussians": num_gaussians,
        "resolution": resolution,
        "visible": int(info["gaussian_ids"].numel()),
        "pairs": info.get("n_pairs"),
        "seconds_median": statistics.median(wall),
        "seconds_min": min(wall),
        "seconds_all": wall,
        "cpu_seconds_median": statistics.median(cpu),
        "peak_memory_mib": peak_mib,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num_gaussians", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument(
        "--backends", nargs="+", default=None, help="cpu and/or gsplat (default: all available)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="10k Gaussians at 128 and 256 only, 2 repeats"
    )
    parser.add_argument("--output", type=Path, default=Path("render_speed.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.num_gaussians, args.resolutions, args.repeats = [10_000], [128, 256], 2
    backends = args.backends or (["cpu", "gsplat"] if torch.cuda.is_available() else ["cpu"])
    results = []
    print(
        f"{'backend':8} {'N':>7} {'res':>5} {'visible':>8} {'pairs':>10} {'median s':>9} {'min s':>8} "
        f"{'cpu s':>7} {'peak MiB':>9}"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    environment = {
        "python": sys.version,
        "torch": torch.__version__,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }
    for backend in backends:
        for num_gaussians in args.num_gaussians:
            for resolution in args.resolutions:
                if backend == "gsplat":
                    # CUDA's peak is reset per configuration, so one process serves them all (each
                    # fresh process would pay CUDA's start and gsplat's load again).
                    row = measure(num_gaussians, resolution, backend, args.repeats)
                else:
                    with ProcessPoolExecutor(
                        1, mp_context=multiprocessing.get_context("spawn")
                    ) as pool:
                        row = pool.submit(
                            measure, num_gaussians, resolution, backend, args.repeats
                        ).result()
                results.append(row)
                # written row by row: a run cut short keeps what it measured
                args.output.write_text(json.dumps({**environment, "results": results}, indent=2))
                print(
                    f"{backend:8} {num_gaussians:>7} {resolution:>5} {row['visible']:>8} {row['pairs'] or '-':>10} "
                    f"{row['seconds_median']:>9.3f} {row['seconds_min']:>8.3f} {row['cpu_seconds_median']:>7.3f} "
                    f"{row['peak_memory_mib']:>9.1f}",
                    flush=True,
                )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
