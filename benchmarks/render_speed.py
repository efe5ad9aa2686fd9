"""Forward + backward time and peak memory of `hf_eff.splat.rendering.rasterize`.

Renders N random Gaussians (a cube of side 2 seen from distance 3, world scales 0.01-0.04,
opacities 0.1-0.9) into one square image and back-propagates an L1 loss, for each size in
--num_gaussians x --resolutions, on the CPU backend and, when CUDA is available, on gsplat.
Prints a table and writes JSON.

    OMP_NUM_THREADS=2 python benchmarks/render_speed.py --quick
    python benchmarks/render_speed.py --num_gaussians 10000 --resolutions 256 --repeats 5
"""

import argparse
import json
import math
import os
import platform
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

from hf_eff.splat.rendering import rasterize


def benchmark_scene(num_gaussians: int, resolution: int, device: str, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    means = torch.rand(num_gaussians, 3, generator=generator) * 2 - 1
    quats = torch.randn(num_gaussians, 4, generator=generator)
    log_scales = torch.empty(num_gaussians, 3).uniform_(math.log(0.01), math.log(0.04), generator=generator)
    opacities = torch.empty(num_gaussians).uniform_(0.1, 0.9, generator=generator)
    colors = torch.rand(num_gaussians, 3, generator=generator)
    viewmat = torch.eye(4)
    viewmat[2, 3] = 3.0
    K = torch.tensor([[resolution, 0.0, resolution / 2], [0.0, resolution, resolution / 2], [0.0, 0.0, 1.0]])
    tensors = [means, quats, log_scales, opacities, colors, viewmat[None], K[None]]
    return [t.to(device) for t in tensors]


class PeakRSS:
    """Samples resident memory in a thread: the CPU counterpart of max_memory_allocated."""

    def __init__(self, interval=0.002):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    @staticmethod
    def current_bytes():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current_bytes())
            time.sleep(self.interval)

    def __enter__(self):
        self.baseline = self.current_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current_bytes())


def forward_backward(inputs, resolution, backend):
    means, quats, log_scales, opacities, colors, viewmats, Ks = inputs
    leaves = [t.detach().clone().requires_grad_() for t in (means, quats, log_scales, opacities, colors)]
    render, _, info = rasterize(
        leaves[0], leaves[1], leaves[2].exp(), leaves[3], leaves[4], viewmats, Ks, resolution, resolution,
        backend=backend,
    )
    render.abs().mean().backward()
    return info


def measure(num_gaussians, resolution, backend, repeats):
    device = "cuda" if backend == "gsplat" else "cpu"
    inputs = benchmark_scene(num_gaussians, resolution, device)
    forward_backward(inputs, resolution, backend)  # warm-up (gsplat JIT, allocator)
    times = []
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(repeats):
            start = time.perf_counter()
            forward_backward(inputs, resolution, backend)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = 0.0
        for _ in range(repeats):
            with PeakRSS() as rss:
                start = time.perf_counter()
                info = forward_backward(inputs, resolution, backend)
                times.append(time.perf_counter() - start)
            peak_mib = max(peak_mib, (rss.peak - rss.baseline) / 2**20)
    info = forward_backward(inputs, resolution, backend)
    return {
        "backend": backend,
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "num_gaussians": num_gaussians,
        "resolution": resolution,
        "visible": int(info["gaussian_ids"].numel()),
        "pairs": int(info["n_pairs"]) if "n_pairs" in info else None,
        "seconds_median": statistics.median(times),
        "seconds_min": min(times),
        "seconds_all": times,
        "peak_memory_mib": peak_mib,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_gaussians", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--backends", nargs="+", default=None, help="cpu and/or gsplat (default: all available)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10k Gaussians at 128 and 256 only, 2 repeats")
    parser.add_argument("--output", type=Path, default=Path("render_speed.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.num_gaussians, args.resolutions, args.repeats = [10_000], [128, 256], 2
    backends = args.backends or (["cpu", "gsplat"] if torch.cuda.is_available() else ["cpu"])
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))

    results = []
    print(f"{'backend':8} {'N':>7} {'res':>5} {'visible':>8} {'pairs':>10} {'median s':>9} {'min s':>8} {'peak MiB':>9}")
    for backend in backends:
        for num_gaussians in args.num_gaussians:
            for resolution in args.resolutions:
                row = measure(num_gaussians, resolution, backend, args.repeats)
                results.append(row)
                print(
                    f"{backend:8} {num_gaussians:>7} {resolution:>5} {row['visible']:>8} {row['pairs'] or '-':>10} "
                    f"{row['seconds_median']:>9.3f} {row['seconds_min']:>8.3f} {row['peak_memory_mib']:>9.1f}",
                    flush=True,
                )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"python": sys.version, "torch": torch.__version__, "results": results}, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
