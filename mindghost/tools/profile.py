"""Parameter and MAC counts for registered models.

MACs count multiply-accumulates of convolutions and linear layers at the given input size (batch 1), the
convention of the GhostNet papers and of thop: BN, activations, pooling and adds are not counted (BN folds
into the preceding convolution at inference).

    python scripts/profile_models.py                      # markdown table of every registered model
    python scripts/profile_models.py --models 'ghostnet_*' --img_size 224
"""
import argparse
import json
from typing import Dict, List, Optional, Sequence

import numpy as np


def count_params(model) -> Dict[str, int]:
    """Trainable parameters, and all parameters including BN moving statistics (MindCV's convention)."""
    trainable = sum(int(np.prod(p.shape)) for p in model.trainable_params())
    total = sum(int(np.prod(p.shape)) for p in model.get_parameters())
    return {"trainable": trainable, "total": total}


def count_macs(model, input_size: Sequence[int] = (3, 224, 224)) -> int:
    """Run one PyNative forward of a batch-1 zero input and sum conv/linear MACs from the output shapes."""
    import mindspore as ms
    from mindspore import nn

    totals: List[int] = []

    def make_hook(cell):
        def hook(_cell_or_id, _inputs, output):  # first argument differs across MindSpore versions
            out_elems = int(np.prod(output.shape))
            if isinstance(cell, nn.Conv2d):
                kh, kw = cell.kernel_size
                totals.append(out_elems * (cell.in_channels // cell.group) * kh * kw)
            else:
                totals.append(out_elems * cell.in_channels)

        return hook

    handles = [cell.register_forward_hook(make_hook(cell))
               for _, cell in model.cells_and_names() if isinstance(cell, (nn.Conv2d, nn.Dense))]
    previous_mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        model.set_train(False)
        model(ms.Tensor(np.zeros((1,) + tuple(input_size), np.float32)))
    finally:
        for handle in handles:
            handle.remove()
        ms.set_context(mode=previous_mode)
    return sum(totals)


def profile(names: Sequence[str], img_size: Optional[int] = None) -> List[dict]:
    from ..models import create_model, get_default_cfg

    rows = []
    for name in names:
        cfg = get_default_cfg(name)
        size = (cfg.input_size[0], img_size or cfg.input_size[1], img_size or cfg.input_size[2])
        model = create_model(name)
        rows.append({"model": name, "input_size": list(size), **count_params(model),
                     "macs": count_macs(model, size), "paper_top1": cfg.paper_top1, "weights": cfg.weights})
    return rows


def _human(n: int) -> str:
    return f"{n / 1e9:.2f}G" if n >= 1e9 else f"{n / 1e6:.1f}M"


def markdown_table(rows: List[dict]) -> str:
    lines = ["| model | input | params | MACs | paper top-1 | weights |", "|---|---|---|---|---|---|"]
    for r in rows:
        top1 = "–" if r["paper_top1"] is None else f"{r['paper_top1']:.1f}"
        lines.append(f"| {r['model']} | {r['input_size'][1]} | {r['trainable'] / 1e6:.2f}M | {_human(r['macs'])} | "
                     f"{top1} | {r['weights'] or '–'} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Print parameter and MAC counts of registered models.")
    parser.add_argument("--models", default="*", help="shell-style pattern over registered names (default: all)")
    parser.add_argument("--img_size", type=int, default=None, help="input resolution (default: the model's cfg)")
    parser.add_argument("--json", default="", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    from ..runtime import prepare_environment

    prepare_environment("auto")  # before MindSpore loads: the CPU fast path
    from ..models import list_models

    names = list_models(args.models)
    if not names:
        parser.error(f"no registered model matches '{args.models}'; see mindghost.list_models()")
    rows = profile(names, args.img_size)
    print(markdown_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0
