"""Export a registered model and checkpoint to MINDIR, ONNX (and AIR on Ascend), with BatchNorm folded.

    python -m mindghost.tools.export --model ghostnet_100 --ckpt_path ghostnet_100.ckpt --format mindir onnx \
        --img_size 224 --batch 1 --out_dir exports/

Every Conv2d → BatchNorm2d pair is folded into the convolution before export (`--no_fuse_bn` keeps BN).
After writing, each file is loaded back (MINDIR through `mindspore.load` + `nn.GraphCell`, ONNX through
onnxruntime when installed) and run on the same seeded input as the MindSpore forward of the unfused model;
the largest difference is printed, and the command fails (exit 1) above `--rtol` (max |diff| / max |output|).
A `<name>.json` next to the files records the model, checkpoint, these checks, and the eval preprocessing a
deployment must apply: the checkpoint's recorded training config (image size, crop_pct, interpolation, mean/std,
class names), else the model's default cfg (`mindghost.inference`); `--img_size` overrides it with a warning.
"""
import argparse
import json
import os
import re
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

FORMATS = ("mindir", "onnx", "air")
SUFFIX = {"mindir": ".mindir", "onnx": ".onnx", "air": ".air"}


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


def build_model(name: str, ckpt_path: str = "", random_weights: bool = False, num_classes: Optional[int] = None,
                ema: bool = False, in_channels: Optional[int] = None):
    """A registered model in eval mode, in its inference form, with weights from `ckpt_path`; random weights only
    when asked for. `num_classes` / `in_channels` None: the model's default cfg (callers pass `InferenceSetup`'s
    values)."""
    from ..models import create_model, get_default_cfg, reparameterize_model

    if not ckpt_path and not random_weights:
        from ..errors import UsageError

        raise UsageError("no --ckpt_path given. Pass a checkpoint, or --random_weights to export an "
                         "untrained model on purpose (for testing a deployment path).")
    cfg = get_default_cfg(name)
    model = create_model(name, num_classes=cfg.num_classes if num_classes is None else num_classes,
                         in_channels=cfg.input_size[0] if in_channels is None else in_channels,
                         checkpoint_path=ckpt_path or None, ema=ema)
    model = reparameterize_model(model)  # GhostNetV3: the fused inference form, before BN folding; else a no-op
    model.set_train(False)
    return model


def export_model(net, x: np.ndarray, path_stem: str, fmt: str) -> str:
    import mindspore as ms

    ms.export(net, ms.Tensor(x), file_name=path_stem, file_format=fmt.upper())
    path = path_stem + SUFFIX[fmt]
    if not os.path.isfile(path):
        raise RuntimeError(f"MindSpore reported no error but did not write {path}")
    return path


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


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mindghost.tools.export",
                                     description="Export a registered model to MINDIR / ONNX / AIR with BN folded.")
    parser.add_argument("--model", required=True, help="registered model name (see mindghost.list_models())")
    parser.add_argument("--ckpt_path", default="", help="checkpoint to export (.ckpt, .safetensors or official .pth)")
    parser.add_argument("--random_weights", action="store_true",
                        help="allow exporting without --ckpt_path (untrained weights; for testing only)")
    parser.add_argument("--ema", action="store_true", help="export the EMA weights of a mindghost training checkpoint")
    parser.add_argument("--num_classes", type=int, default=None,
                        help="classifier size (default: the checkpoint's recorded one, else the model's cfg)")
    parser.add_argument("--format", nargs="+", default=["mindir", "onnx"], choices=FORMATS,
                        help="one or more formats (AIR needs an Ascend device)")
    parser.add_argument("--img_size", type=int, default=None,
                        help="input resolution (default: the checkpoint's recorded eval size, else the model's cfg)")
    parser.add_argument("--batch", type=int, default=1, help="batch size fixed into the exported graph")
    parser.add_argument("--out_dir", default="exports", help="output folder")
    parser.add_argument("--name", default="", help="file name stem (default: <model>_<img_size>_b<batch>)")
    parser.add_argument("--no_fuse_bn", action="store_true", help="keep BatchNorm layers (default: fold into convs)")
    parser.add_argument("--rtol", type=float, default=1e-5, help="parity tolerance: max |diff| / max |output|")
    parser.add_argument("--device", default="auto", help="CPU, GPU, Ascend or auto")
    args = parser.parse_args(argv)

    from ..runtime import prepare_environment, setup_context

    device, note = prepare_environment(args.device)
    if "air" in args.format and device != "Ascend":
        parser.error(f"AIR export needs an Ascend device (this process runs on {device}); "
                     "use --format mindir onnx here, or run on Ascend")
    from ..models import get_default_cfg, is_model

    if not is_model(args.model):
        try:
            get_default_cfg(args.model)
        except ValueError as e:  # names the registered models and close matches
            parser.error(str(e))
    setup_context(device, mode="graph")
    import mindspore as ms

    from ..inference import resolve_inference_setup, setup_from_checkpoint
    from ..models import count_batchnorms, fuse_bn, max_diff

    # the checkpoint's recorded model, classes and eval preprocessing (what its JSON tells a deployment);
    # a CheckpointError (run directory, missing file, other model or num_classes) reaches run_main: exit 2
    explicit = {"image_size": args.img_size, "num_classes": args.num_classes}
    if args.ckpt_path:
        _, setup = setup_from_checkpoint(args.ckpt_path, args.model, explicit, flags={"image_size": "--img_size"})
    else:  # --random_weights: nothing recorded, the model's defaults
        setup = resolve_inference_setup({}, args.model, explicit, flags={"image_size": "--img_size"})
    for line in setup.messages():
        print(line)
    img_size = setup.image_size
    shape = (args.batch, setup.in_channels, img_size, img_size)
    model = build_model(args.model, args.ckpt_path, args.random_weights, setup.num_classes, args.ema,
                        setup.in_channels)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    reference = model(ms.Tensor(x)).asnumpy()

    report: Dict[str, object] = {
        "model": args.model, "checkpoint": args.ckpt_path or None, "random_weights": not args.ckpt_path,
        "ema": args.ema, "input_shape": list(shape), "output_shape": list(reference.shape),
        "num_classes": setup.num_classes, "class_names": list(setup.class_names) if setup.class_names else None,
        "preprocessing": setup.preprocessing_dict(), "preprocessing_notes": setup.messages(),
        "mindspore": ms.__version__, "bn_fused": not args.no_fuse_bn, "files": {}, "parity": {}, "rtol": args.rtol,
    }
    lines: List[str] = []
    net = model
    if not args.no_fuse_bn:
        net = fuse_bn(model, input_shape=(1,) + shape[1:])
        diff = max_diff(reference, net(ms.Tensor(x)).asnumpy())
        report["parity"]["fused_vs_unfused"] = diff
        report["bn_folded"] = len(net.fused_pairs)
        report["bn_left"] = count_batchnorms(net)
        lines.append(f"  folded {len(net.fused_pairs)} BatchNorm layers into convolutions "
                     f"({report['bn_left']} BatchNorm left)")
        lines.append(_parity_line("fused (MindSpore)", diff, args.rtol))

    os.makedirs(args.out_dir, exist_ok=True)
    stem = os.path.join(args.out_dir, args.name or f"{args.model}_{img_size}_b{args.batch}")
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
