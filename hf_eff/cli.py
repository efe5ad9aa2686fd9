"""The `hf-eff` command: demo, env, push."""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import sys
from pathlib import Path

_KEY_PACKAGES = (
    "hf-eff", "torch", "transformers", "peft", "accelerate", "datasets", "huggingface_hub",
    "safetensors", "torch_geometric", "gsplat",
)


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def gsplat_cuda_status(compile_kernels: bool = False) -> str:
    """Whether gsplat's CUDA kernels can run here. Compiling them takes minutes, so by default
    this only checks the prerequisites (a CUDA torch, a GPU and nvcc)."""
    import torch

    if not torch.cuda.is_available():
        return "unusable: no CUDA device (the CPU backend renders instead)"
    if torch.version.cuda is None:
        return "unusable: torch is a CPU build"
    if shutil.which("nvcc") is None:
        return "unusable: nvcc not found (gsplat JIT-compiles its kernels)"
    if not compile_kernels:
        return "prerequisites present (run `hf-eff env --compile` to build the kernels)"
    try:
        from gsplat.cuda._backend import _C
    except Exception as error:  # report, whatever the build failure is
        return f"unusable: kernel build failed: {error}"
    return "usable" if _C is not None else "unusable: kernel build failed"


def cmd_env(args: argparse.Namespace) -> int:
    import torch

    for name in _KEY_PACKAGES:
        print(f"{name:18s} {_version(name)}")
    device = f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu"
    print(f"{'torch device':18s} {device}, {torch.get_num_threads()} threads")
    print(f"{'gsplat CUDA':18s} {gsplat_cuda_status(args.compile)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from hf_eff.demo import run_demo

    out = Path(args.out)
    # checked before the sections run (minutes), so that the report has a place to go
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        args.parser.error(f"--out {out}: cannot create the report folder: {error.strerror}")
    return 0 if run_demo(out, only=args.only or None, quick=args.quick) else 1


def demo_sections(text: str) -> list[str]:
    """--only's value: comma-separated names of demo sections, each checked here so a typo stops the CLI."""
    from hf_eff.demo import SECTIONS

    names = [name for name in text.split(",") if name]
    if not names:  # "" or ",": refused rather than read as "every section"
        raise argparse.ArgumentTypeError(f"no section named; choose from {','.join(SECTIONS)} or leave --only out")
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown section(s) {unknown}; choose from {','.join(SECTIONS)}")
    return names


def cmd_push(args: argparse.Namespace) -> int:
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, HTTPError, OfflineModeIsEnabled

    from hf_eff.hub.push import push_output_dir

    try:
        url = push_output_dir(Path(args.output_dir), args.repo_id, private=args.private, token=args.token,
                              license=args.license, revision=args.revision, given_as="--token")
    except HfHubHTTPError as error:  # the Hub refused (a bad token, no access): exit 1, on one line
        print(f"{args.parser.prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    except HTTPError as error:
        # No answer at all (no connection, a timeout: huggingface_hub's HTTP client's errors, of which the Hub's
        # answers above are a subclass). push_output_dir puts the folder's README.md back when its upload fails.
        print(f"{args.parser.prog}: error: the Hub at {constants.ENDPOINT} (HF_ENDPOINT) could not be reached "
              f"({type(error).__name__}: {' '.join(str(error).split())}); nothing local changed: push again once "
              "it answers", file=sys.stderr)
        return 1
    except OfflineModeIsEnabled:  # an OSError, but no fault of what the user passed
        print(f"{args.parser.prog}: error: cannot push to {args.repo_id}: the Hub at {constants.ENDPOINT} (HF_ENDPOINT) "
              "could not be reached: offline mode is on (HF_HUB_OFFLINE); nothing local changed: unset HF_HUB_OFFLINE "
              "and push again", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        # What the user passed is wrong (no folder, no token, an invalid one, a bad repo id): argparse's
        # usage error, exit 2. (HfHubHTTPError and OfflineModeIsEnabled are OSErrors too, hence the order.)
        args.parser.error(str(error))
    print(f"Pushed {args.output_dir} to {url}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-eff", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run every method beside its baseline; writes a report folder",
                          description="Trains each method beside its baseline on small built-in data (HaLoRA vs "
                          "LoRA under simulated RRAM noise, GraNT vs full-data training, global-to-local splatting vs "
                          "3DGS densification) and writes the comparison to a report folder: report.md, "
                          "results.json and PNG plots.")
    demo.add_argument("--out", default="hf_eff_report",
                      help="report folder (report.md, results.json, PNGs; default: %(default)s)")
    demo.add_argument("--only", type=demo_sections, default=[], help="comma-separated sections: halora,grant,splat; "
                      "the other sections of a report already in --out are kept")
    demo.add_argument("--quick", action="store_true",
                      help="smallest sizes, under a minute on 2 cores: shows that every pipeline runs (HaLoRA "
                      "on a tiny random Llama), not the methods' gains")
    demo.set_defaults(func=cmd_demo, parser=demo)

    env = sub.add_parser("env", help="library versions, torch device, gsplat CUDA status")
    env.add_argument("--compile", action="store_true", help="also build gsplat's CUDA kernels")
    env.set_defaults(func=cmd_env, parser=env)

    push = sub.add_parser("push", help="push a finished example run, a saved model or a scene (with its card) to the "
                          "Hub")
    push.add_argument("output_dir", help="--output_dir of a finished example run (with its all_results.json), a "
                      "folder a model's save_pretrained wrote (a HaLoRA adapter, GrantGCN or GaussianModel: its card "
                      "says that no evaluation results were recorded), or a scene folder written by Scene.save")
    push.add_argument("repo_id", help="USER/NAME or ORG/NAME (a bare NAME is the token's user's); created if missing "
                      "(a scene goes to a dataset repo)")
    push.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its "
                      "visibility)")
    push.add_argument("--license", default=None,
                      help="the card's license (a Hub license id, e.g. apache-2.0); without it only an adapter of the "
                      "built-in SmolLM2 base states one")
    push.add_argument("--revision", default=None,
                      help="the branch to push to, created from main if missing; the card's loading lines name it "
                      "(default: main)")
    push.add_argument("--token", default=None, help="defaults to HF_TOKEN or the stored login")
    push.set_defaults(func=cmd_push, parser=push)
    return parser


def main(argv: list[str] | None = None) -> int:
    # parse_known_args, so that an unknown option is reported with its command's usage, not the top level's.
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
