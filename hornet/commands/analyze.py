"""`hornet analyze`: interaction orders (J(m)) and effective receptive fields of trained models and suites."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    interactions = kinds.add_parser("interactions", help="strength of interactions by order, J(m) (docs/analysis.md)")
    erf = kinds.add_parser("erf", help="effective receptive field of every stage (docs/analysis.md)")
    suite = kinds.add_parser("suite", help="both analyses on every finished run of a suite, resumably")
    suite.add_argument("suite_dir", metavar="SUITE_DIR", help="a suite directory (with results.csv)")
    suite.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    for name, default in (("images", 10), ("grid", 7), ("pairs", 20), ("contexts", 16)):
        suite.add_argument(f"--{name}", type=int, default=default, help=f"as `hornet analyze interactions` ({default})")
    suite.add_argument("--erf-images", type=int, default=32, help="as `hornet analyze erf --images` (32)")
    compare = kinds.add_parser("compare", help="one analysis of several models, drawn in one figure")
    compare.add_argument(
        "analysis_kind", choices=("interactions", "erf"), metavar="{interactions,erf}", help="which analysis"
    )
    compare.add_argument(
        "models", nargs="+", metavar="MODEL",
        help="NAME (a timm model, untrained), NAME=WEIGHTS (loaded from a weights file) or a `hornet fit` run folder",
    )  # fmt: skip
    compare.add_argument("--output", metavar="DIR", default="analysis/compare", help="where to write")
    for sub in (interactions, erf):
        source = sub.add_mutually_exclusive_group(required=True)
        source.add_argument("--run", metavar="DIR", help="a `hornet fit` run directory (its config, best checkpoint)")
        source.add_argument("--ckpt", metavar="PATH", help="a `hornet fit` checkpoint (data: the default config's)")
        source.add_argument("--model", metavar="NAME", help="any timm classifier (untrained unless --weights)")
        sub.add_argument(
            "--weights",
            metavar="FILE",
            default=None,
            help="--model's weights: the authors' released file, timm's, or a `hornet fit` checkpoint",
        )
        sub.add_argument("--output", metavar="DIR", default=None, help="where to write (default: RUN/analysis)")
    for sub in (interactions, erf, compare):
        sub.add_argument(
            "--model-kwargs",
            metavar="JSON",
            type=json.loads,
            default=None,
            help="keyword arguments of the timm models, e.g. '{\"depths\": [2, 3, 18, 2]}'",
        )
        sub.add_argument(
            "--data-root",
            metavar="DIR",
            default=None,
            help="an ImageNet-layout folder (val/<class>/*), read through each model's own eval "
            "transform (default: the run's data, else the default config's)",
        )
        sub.add_argument(
            "--img-size",
            type=int,
            default=None,
            help="input size (default: the data's, or the model's pretrained size with --data-root)",
        )
        sub.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    compare.add_argument("--images", type=int, default=None, help="images per model (the analysis's default)")
    interactions.add_argument("--images", type=int, default=10, help="correctly classified test images (10)")
    interactions.add_argument("--grid", type=int, default=7, help="G: players are the cells of a G x G grid (7)")
    interactions.add_argument("--pairs", type=int, default=20, help="neighbour pairs per image (20)")
    interactions.add_argument("--contexts", type=int, default=16, help="sampled contexts per pair and order (16)")
    interactions.add_argument(
        "--orders",
        type=float,
        nargs="+",
        default=None,
        help="ratios r of m = int((n-2) r) (default: the 13 of the paper)",
    )
    interactions.add_argument("--batch-size", type=int, default=512, help="masked images per forward pass (512)")
    interactions.add_argument("--seed", type=int, default=0, help="seed of images, pairs and contexts (0)")
    erf.add_argument("--images", type=int, default=32, help="test images averaged (32)")
    erf.add_argument("--sizes", type=int, nargs="+", default=None, help="input sizes (default: the data's and 2x)")
    erf.add_argument("--batch-size", type=int, default=16, help="images per backward pass (16)")


def run(args: argparse.Namespace) -> int:
    import hornet  # noqa: F401  (registers the models)
    from hornet.analysis.probe.analyze import analyze_erf, analyze_interactions
    from hornet.analysis.probe.interactions import RATIOS
    from hornet.analysis.probe.trained import load_trained

    if args.analysis == "suite":
        from hornet.analysis.probe.analyze import analyze_suite

        settings = {key: getattr(args, key) for key in ("images", "grid", "pairs", "contexts")}
        paths = analyze_suite(
            args.suite_dir, interactions=settings, erf={"images": args.erf_images}, device=args.device
        )
        return _written(paths)
    data = {"model_kwargs": args.model_kwargs, "data_root": args.data_root, "img_size": args.img_size}
    if args.analysis == "compare":
        from hornet.analysis.probe.analyze import compare_models

        trained = {}
        for entry in args.models:
            label, model = _compare_entry(entry, data)
            trained[label if label not in trained else f"{label}_{len(trained)}"] = model
        settings = {"images": args.images} if args.images is not None else {}
        paths = compare_models(trained, args.analysis_kind, args.output, settings=settings, device=args.device)
        return _written(paths)
    trained = load_trained(run=args.run, ckpt=args.ckpt, model=args.model, weights=args.weights, **data)
    default = Path(args.run) / "analysis" if args.run else Path("analysis") / (args.model or Path(args.ckpt).stem)
    output = Path(args.output) if args.output else default
    if args.analysis == "interactions":
        paths = analyze_interactions(
            trained, output, images=args.images, grid=args.grid, pairs=args.pairs, contexts=args.contexts,
            ratios=args.orders or RATIOS, batch_size=args.batch_size, seed=args.seed, device=args.device,
        )  # fmt: skip
    else:
        paths = analyze_erf(
            trained, output, images=args.images, sizes=args.sizes, batch_size=args.batch_size, device=args.device
        )
    return _written(paths)


def _written(paths: dict[str, Path]) -> int:
    """Say where each file went (stderr); the command's exit status."""
    for path in paths.values():
        Console(stderr=True).print(f"wrote {path}", highlight=False)
    return 0


def _compare_entry(entry: str, data: dict):
    """A compare argument -> (label, Trained): a run folder, NAME=WEIGHTS or NAME."""
    from hornet.analysis.probe.trained import load_trained

    if Path(entry).is_dir():  # a run names its own model
        return Path(entry).name, load_trained(run=entry, **{**data, "model_kwargs": None})
    name, _, weights = entry.partition("=")
    return name, load_trained(model=name, weights=weights or None, **data)
