"""The ``export`` sub-command: a checkpoint to ONNX graphs (and int8) a tracker can load as is.

A plugin of :mod:`siamtrack.cli` at the command-line layer (it resolves ``--weights`` through
:mod:`siamtrack.weights`, which sits above :mod:`siamtrack.deploy`)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EXPORT_EXAMPLES = """examples:
  siamtrack export --weights student --format onnx --output deploy/student
  siamtrack export --weights teacher --format onnx --output deploy/teacher --int8 --data ../shared/data/got10k
  siamtrack track video.mp4 --box 10,20,60,40 --weights deploy/student          # fp32 on onnxruntime
  siamtrack track video.mp4 --box 10,20,60,40 --weights deploy/student@int8
"""


def add_subcommands(subparsers: Any) -> None:
    """Register ``export`` on the main command's sub-parsers."""
    p = subparsers.add_parser(
        "export", help="export weights to ONNX (exemplar graph, search + head graph), optionally int8",
        description="Export the exemplar branch and the search branch with the xcorr head as two ONNX "
                    "graphs taking uint8 RGB crops, check them against PyTorch on real crops (max abs "
                    "response difference < 1e-4) and write siamtrack.json with the tracker settings. "
                    "--int8 adds a statically quantized search graph calibrated on training crops.",
        epilog=EXPORT_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, metavar="teacher|student|PATH",
                   help="shipped weights by name or a checkpoint file")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format (default onnx)")
    p.add_argument("--output", required=True, metavar="DIR", help="folder for the graphs and siamtrack.json")
    p.add_argument("--int8", action="store_true", help="also write an int8 search graph (search_int8.onnx)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="GOT-10k-layout root: crops from DIR/val check the graphs, from DIR/train calibrate "
                        "int8 (default: ../shared/data/got10k if present, else generated clips)")
    p.add_argument("--calibration-pairs", type=int, default=None, metavar="N",
                   help="training pairs for int8 calibration (default 150)")
    # no defaults here: unset options leave siamtrack.deploy.quantize's recipe in charge
    p.add_argument("--int8-fp32", default=None, choices=["head", "depthwise", "depthwise+stem"],
                   help="what the int8 search graph keeps in fp32 besides the xcorr head: nothing else, "
                        "the depthwise convs (default), or those and the first conv")
    p.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=None,
                   help="7-bit int8 weights, exact on x86 CPUs whose u8s8 kernels saturate (no VNNI); "
                        "--no-reduce-range uses all 8 bits (default: 7-bit)")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from .deploy.artifacts import CALIBRATION_PAIRS, export_checkpoint
    from .weights import resolve_weights

    pairs = args.calibration_pairs if args.calibration_pairs is not None else CALIBRATION_PAIRS
    if pairs < 3:
        raise ValueError(f"--calibration-pairs must be at least 3, got {pairs}")
    weights = resolve_weights(args.weights)
    if weights.is_dir():
        raise ValueError(f"{weights} is already an export; pass the checkpoint it came from")
    recipe = {k: v for k, v in (("keep_fp32", args.int8_fp32), ("reduce_range", args.reduce_range))
              if v is not None}
    manifest = export_checkpoint(weights, args.output, int8=args.int8, data_root=args.data,
                                 calibration_pairs=pairs, **recipe)
    out = Path(args.output)
    for precision, models in manifest["models"].items():
        check = models["check"]
        print(f"{precision}: {out / models['exemplar']}, {out / models['search']}; max abs response "
              f"difference to PyTorch {check['response_max_abs_diff']:.2g} (responses up to "
              f"{check['response_max_abs']:.3g}) on {check['data']}")
        if "calibration" in models:
            print(f"{precision}: calibrated on {models['calibration']['data']}")
    print(f"settings: {out / 'siamtrack.json'}; track with --weights {out} (fp32)"
          + (f" or --weights {out}@int8" if args.int8 else ""))
    return 0
