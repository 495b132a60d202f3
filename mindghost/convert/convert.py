"""Convert published weights (PyTorch `.pth`/`.pth.tar`/`.pt`/`.bin`, MindCV or mindghost `.ckpt`) into a
self-describing mindghost checkpoint.

    python -m mindghost.convert --model ghostnet_100 --src state_dict_73.98.pth --out ghostnet_100_official.ckpt

The weights go through the same strict loader as training and validation (`mindghost.models.load_checkpoint`:
family name mapping, then every parameter present with the right shape), and the output is written atomically
with a `mindghost_meta` JSON entry: architecture, class count, source file and sha256, eval preprocessing.
"""
import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional

from ..errors import ConvertError
from ..hub import sha256_of
from ..weights import TORCH_SUFFIXES, CheckpointError, atomic_save, load_checkpoint

__all__ = ["CONVERTER_VERSION", "ConvertError", "convert", "main"]

CONVERTER_VERSION = "1"
EVAL_KEYS = ("input_size", "crop_pct", "interpolation", "mean", "std")


def _source_format(path: str) -> str:
    if path.endswith(TORCH_SUFFIXES):
        return "pytorch"
    return "safetensors" if path.endswith(".safetensors") else "mindspore-ckpt"


def convert(model_name: str, src: str, out: str, num_classes: Optional[int] = None, ema: bool = False,
            force: bool = False, new_classifier: bool = False) -> Dict[str, Any]:
    """Convert `src` into a mindghost checkpoint at `out` for `model_name`; returns the metadata written.

    `new_classifier=True` (with `num_classes` N): every tensor but the classifier is taken from `src` strictly, the
    classifier is a freshly initialised N-class one (a starting point for fine-tuning); the dropped keys are
    logged and listed in the metadata. GhostNetV3 files of either form are detected: a fused file gives a fused
    checkpoint (`meta["reparameterized"]`)."""
    if not out.endswith(".ckpt"):
        raise ConvertError(f"--out must end with .ckpt (MindSpore checkpoint), got '{out}'")
    if not os.path.isfile(src):
        raise ConvertError(f"source checkpoint not found: '{src}'")
    if os.path.abspath(src) == os.path.abspath(out):
        raise ConvertError("--src and --out are the same file")
    if new_classifier and num_classes is None:
        raise ConvertError("--new_classifier needs --num_classes N (the class count of the new classifier)")
    if os.path.exists(out) and not force:
        raise ConvertError(f"'{out}' already exists; pass --force to overwrite it")
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        raise ConvertError(f"the directory of --out does not exist: '{os.path.dirname(os.path.abspath(out))}'")

    import mindspore

    from .. import __version__
    from ..models import create_model, get_default_cfg

    if num_classes is None:
        num_classes = get_default_cfg(model_name).num_classes
    model = create_model(model_name, num_classes=num_classes)
    # strict: every parameter, right shapes (all but the classifier with new_classifier)
    source_meta = load_checkpoint(model, src, ema=ema, new_classifier=new_classifier)

    params = model.parameters_dict()
    cfg = dict(model.default_cfg)
    meta: Dict[str, Any] = {
        "kind": "mindghost-weights",
        "architecture": model_name,
        "num_classes": num_classes,
        "eval": {k: cfg[k] for k in EVAL_KEYS if k in cfg},
        "default_cfg": cfg,
        "source": {
            "file": os.path.basename(src),
            "sha256": sha256_of(src),
            "format": _source_format(src),
            "ema": ema,
        },
        "converter": {"version": CONVERTER_VERSION, "mindghost": __version__, "mindspore": mindspore.__version__},
        "new_classifier": new_classifier,
        "reparameterized": bool(getattr(model, "reparameterized", False)),
        "tensors": len(params),
        "params": int(sum(p.size for p in params.values() if p.requires_grad)),
    }
    if source_meta:
        meta["source"]["meta"] = source_meta
    atomic_save(model, out, json.dumps(meta, sort_keys=True, default=list), verify=True)
    return meta


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convert_weights",
        description="Convert PyTorch (.pth/.pth.tar/.pt/.bin) or MindCV (.ckpt) weights into a mindghost .ckpt. "
                    "PyTorch files are read without torch and without executing pickled code.")
    parser.add_argument("--model", required=True, help="registered model name, e.g. ghostnet_100")
    parser.add_argument("--src", required=True, help="source checkpoint")
    parser.add_argument("--out", required=True, help="output MindSpore checkpoint (.ckpt)")
    parser.add_argument("--num_classes", type=int, default=None,
                        help="classifier size of the source weights (default: the model's, 1000 for ImageNet); with "
                             "--new_classifier, the size of the new classifier")
    parser.add_argument("--ema", action="store_true",
                        help="take the EMA weights (state_dict_ema in timm checkpoints, ema.* in mindghost ones)")
    parser.add_argument("--new_classifier", action="store_true",
                        help="fine-tuning start: take everything but the classifier from --src, and give the output a "
                             "fresh classifier of --num_classes outputs (the dropped keys are logged)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """CLI entry point: 0 on success; 2 with a one-paragraph message (no traceback; MINDGHOST_TRACEBACK=1 shows it)
    on any expected failure."""
    args = build_parser().parse_args(argv)
    try:
        meta = convert(args.model, args.src, args.out, num_classes=args.num_classes, ema=args.ema, force=args.force,
                       new_classifier=args.new_classifier)
    except (CheckpointError, ConvertError, ValueError, OSError, RuntimeError) as e:
        if os.environ.get("MINDGHOST_TRACEBACK"):
            raise
        print(f"convert_weights: error: {e}", file=sys.stderr)
        return 2
    print(f"converted {meta['tensors']} tensors ({meta['params']:,} trainable params) of {args.model} "
          f"({meta['num_classes']} classes) from {args.src} -> {args.out}")
    return 0
