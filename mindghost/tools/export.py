"""Export a registered model and checkpoint to MINDIR, ONNX (and AIR on Ascend), with BatchNorm folded.

    python -m mindghost.tools.export --ckpt_path runs/x/checkpoints/last.ckpt --format mindir onnx \
        --image_size 224 --batch_size 1 --output_dir exports/

The model is built by `mindghost.inference.build_inference_model` (the checkpoint's recorded model, classes and
preprocessing; `--model` only for checkpoints that record none), without the CPU pass: a graph file holds plain
cells. Every Conv2d → BatchNorm2d pair is folded into the convolution before export (`--fuse_bn false` keeps BN).
After writing, each file is loaded back (MINDIR through `mindspore.load` + `nn.GraphCell`, ONNX through
onnxruntime when installed) and run on the same seeded input as the MindSpore forward of the unfused model;
the largest difference is printed, and the command fails (exit 1) above `--rtol` (max |diff| / max |output|).
A `<name>.json` next to the files records the model, checkpoint, these checks, and the eval preprocessing a
deployment must apply: the checkpoint's recorded training config (image size, crop_pct, interpolation, mean/std,
class names), else the model's default cfg (`mindghost.inference`); `--image_size` overrides it with a warning.
"""
import argparse
import json
import os
import re
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..deploy.export import FORMATS, SUFFIX, export_model  # noqa: F401  (export_model: part of this tool's API)

ONNX_MISSING_NOTE = "opset not read: the onnx package is not installed (pip install onnx)"


def onnx_opset(path: str) -> Optional[int]:
    """The default-domain (`ai.onnx`) opset an ONNX file declares, read with the `onnx` package (the graph only,
    no external weight files); None when `onnx` is not installed or the file declares none."""
    try:
        import onnx
    except ImportError:
        return None
    for entry in onnx.load(path, load_external_data=False).opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None


def onnx_opset_record(path: str) -> Dict[str, object]:
    """The export JSON's opset entries: {"onnx_opset": N}, or {"onnx_opset": None, "onnx_opset_note": why}."""
    opset = onnx_opset(path)
    if opset is not None:
        return {"onnx_opset": opset}
    try:
        import onnx  # noqa: F401
    except ImportError:
        return {"onnx_opset": None, "onnx_opset_note": ONNX_MISSING_NOTE}
    return {"onnx_opset": None, "onnx_opset_note": "the file declares no default-domain (ai.onnx) opset"}


def run_mindir(path: str, x: np.ndarray) -> np.ndarray:
    import mindspore as ms
    from mindspore import nn

    return nn.GraphCell(ms.load(path))(ms.Tensor(x)).asnumpy()


def run_onnx(path: str, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _export_failure(message: str) -> str:
    """One line out of MindSpore's multi-page export error."""
    found = re.search(r"Can not find key (\w+) in convert map", message)
    if found:
        return (f"MindSpore has no ONNX mapping for the operator {found.group(1)} used by this model "
                "(MINDIR export is unaffected)")
    return message.strip().splitlines()[0] if message.strip() else "unknown error"


def _parity_line(label: str, diff: Dict[str, float], rtol: float) -> str:
    verdict = "ok" if diff["max_rel"] <= rtol else f"FAILED (> {rtol:g})"
    return f"  parity {label:<22} max_abs={diff['max_abs']:.3e}  max_rel={diff['max_rel']:.3e}  {verdict}"


def build_parser() -> argparse.ArgumentParser:
    from ..cli import add_args

    parser = argparse.ArgumentParser(prog="python -m mindghost.tools.export",
                                     description="Export a registered model to MINDIR / ONNX / AIR with BN folded.")
    add_args(parser, "model", "ckpt_path", "random_weights", "ema", "num_classes", "format", "image_size",
             "batch_size", "output_dir", "fuse_bn", "rtol", "device",
             defaults={"model": None, "num_classes": None, "image_size": None, "batch_size": 1,
                       "output_dir": "exports", "fuse_bn": "true"},
             helps={"model": "registered model name (default: the one the checkpoint records)",
                    "ckpt_path": "checkpoint to export (.ckpt, .safetensors or official .pth)",
                    "random_weights": "allow exporting without --ckpt_path (untrained weights; for testing only)",
                    "ema": "export the EMA weights of a mindghost training checkpoint",
                    "num_classes": "classifier size (default: the checkpoint's recorded one, else the model's cfg)",
                    "image_size": "input resolution (default: the checkpoint's recorded eval size, else the model's "
                                  "cfg)",
                    "batch_size": "batch size fixed into the exported graph",
                    "output_dir": "output folder",
                    "fuse_bn": "fold BatchNorm into the convs before export (auto: on CPU only)"})
    parser.add_argument("--name", default="", help="file name stem (default: <model>_<image_size>_b<batch_size>)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.ckpt_path and not args.random_weights:
        from ..errors import UsageError

        raise UsageError("no --ckpt_path given. Pass a checkpoint, or --random_weights to export an "
                         "untrained model on purpose (for testing a deployment path).")
    if args.random_weights and not args.model:
        parser.error("--random_weights needs --model (which model to export untrained)")

    from ..runtime import prepare_environment, setup_context

    device, note = prepare_environment(args.device)
    if "air" in args.format and device != "Ascend":
        parser.error(f"AIR export needs an Ascend device (this process runs on {device}); "
                     "use --format mindir onnx here, or run on Ascend")
    from ..models import get_default_cfg, is_model

    if args.model and not is_model(args.model):
        try:
            get_default_cfg(args.model)
        except ValueError as e:  # names the registered models and close matches
            parser.error(str(e))
    setup_context(device, mode="graph")
    import mindspore as ms

    from ..inference import build_inference_model
    from ..models import count_batchnorms, max_diff

    # the checkpoint's recorded model, classes and eval preprocessing (what its JSON tells a deployment);
    # a CheckpointError (run directory, missing file, other model or num_classes) reaches run_main: exit 2
    built = build_inference_model(args.ckpt_path, args.model, {"image_size": args.image_size,
                                                               "num_classes": args.num_classes},
                                  random_weights=args.random_weights and not args.ckpt_path, ema=args.ema,
                                  fuse_bn=args.fuse_bn, device=device, cpu_pass=False, keep_unfused=True)
    setup = built.setup
    for line in setup.messages():
        print(line)
    img_size = setup.image_size
    shape = (args.batch_size, setup.in_channels, img_size, img_size)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    reference = built.unfused(ms.Tensor(x)).asnumpy()

    report: Dict[str, object] = {
        "model": setup.model, "checkpoint": args.ckpt_path or None, "random_weights": not args.ckpt_path,
        "ema": args.ema, "input_shape": list(shape), "output_shape": list(reference.shape),
        "num_classes": setup.num_classes, "class_names": list(setup.class_names) if setup.class_names else None,
        "preprocessing": setup.preprocessing_dict(), "preprocessing_notes": setup.messages(),
        "mindspore": ms.__version__, "bn_fused": built.bn_folded > 0, "files": {}, "parity": {}, "rtol": args.rtol,
    }
    lines: List[str] = []
    net = built.model
    if built.bn_folded:
        diff = max_diff(reference, net(ms.Tensor(x)).asnumpy())
        report["parity"]["fused_vs_unfused"] = diff
        report["bn_folded"] = built.bn_folded
        report["bn_left"] = count_batchnorms(net)
        lines.append(f"  folded {built.bn_folded} BatchNorm layers into convolutions "
                     f"({report['bn_left']} BatchNorm left)")
        lines.append(_parity_line("fused (MindSpore)", diff, args.rtol))

    os.makedirs(args.output_dir, exist_ok=True)
    stem = os.path.join(args.output_dir, args.name or f"{setup.model}_{img_size}_b{args.batch_size}")
    failed = any(d["max_rel"] > args.rtol for d in report["parity"].values())
    for fmt in args.format:
        try:
            path = export_model(net, x, stem, fmt)
        except (RuntimeError, TypeError, ValueError) as e:
            failed = True
            reason = _export_failure(str(e))
            report["files"][fmt] = None
            report.setdefault("errors", {})[fmt] = reason
            print(f"{fmt} export FAILED: {reason}")
            continue
        report["files"][fmt] = path
        extra = ""
        if fmt == "onnx":
            report.update(onnx_opset_record(path))
            opset = report["onnx_opset"]
            extra = f" (opset {opset})" if opset is not None else f" ({report['onnx_opset_note']})"
        print(f"wrote {path}{extra}  {os.path.getsize(path) / 1e6:.2f} MB")
        if fmt == "mindir":
            diff = max_diff(reference, run_mindir(path, x))
        elif fmt == "onnx":
            try:
                import onnxruntime  # noqa: F401
            except ImportError:
                lines.append("  parity onnx: not checked, onnxruntime is not installed (pip install onnxruntime)")
                continue
            diff = max_diff(reference, run_onnx(path, x))
        else:
            lines.append("  parity air: not checked (AIR is compiled by ATC, not loadable here)")
            continue
        report["parity"][fmt] = diff
        failed = failed or diff["max_rel"] > args.rtol
        lines.append(_parity_line(f"{fmt} reloaded", diff, args.rtol))

    report_path = stem + ".json"
    with open(report_path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {report_path}")
    if note:
        print(f"note: {note}")
    print(f"parity vs the MindSpore forward of the unfused model, input {list(shape)}:")
    print("\n".join(lines))
    return 1 if failed else 0


def cli() -> None:
    """Console entry point (`mindghost-export`): exits through `runtime.run_main`."""
    from ..runtime import run_main

    run_main(main, sys.argv[1:])


if __name__ == "__main__":
    cli()
