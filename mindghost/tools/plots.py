"""Training curves and summary redrawn from a run directory, after (or during) training.

    python -m mindghost.tools.plots --run_dir runs/ghostnet_050_fmnist

Reads the trainer's `metrics.jsonl` (one JSON object per epoch) and draws `curves.png` with the trainer's
own drawing function (`mindghost.training.callbacks.plot_curves`, the one place curves are drawn), then
prints a summary: epochs, last train loss, best and last validation top-1/top-5, median img/s.
matplotlib is an optional extra: `pip install matplotlib`.
"""
import argparse
import math
import os
import statistics
import sys
from typing import Any, Dict, List, Optional, Sequence

MATPLOTLIB_HINT = ("matplotlib is needed for the figures (an optional extra of mindghost): "
                   "pip install matplotlib")


def require_matplotlib():
    """matplotlib.pyplot on the non-interactive Agg backend; ImportError when it is not installed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def matplotlib_available() -> bool:
    """True when matplotlib imports; otherwise prints how to install it (the CLIs then exit 2)."""
    try:
        require_matplotlib()
    except ImportError:
        print(MATPLOTLIB_HINT)
        return False
    return True


def load_history(run_dir: str) -> List[Dict[str, Any]]:
    """The per-epoch records of `<run_dir>/metrics.jsonl` that carry an epoch number."""
    from ..training.callbacks import read_metrics

    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no metrics.jsonl in '{run_dir}' (the trainer writes it after each epoch)")
    return [h for h in read_metrics(path) if "epoch" in h]


def summarize_history(history: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Epochs, last train loss, best/last validation accuracy and median throughput; missing keys are skipped."""

    def finite(key):
        return [(h["epoch"], h[key]) for h in history
                if isinstance(h.get(key), (int, float)) and math.isfinite(h[key])]

    summary: Dict[str, Any] = {"epochs": len(history), "last_epoch": history[-1]["epoch"] if history else None}
    losses = finite("train_loss")
    if losses:
        summary["last_train_loss"] = losses[-1][1]
    for key in ("val_top1", "val_top5", "val_loss", "val_ema_top1"):
        points = finite(key)
        if points:
            summary[f"last_{key}"] = points[-1][1]
            if key != "val_loss":
                best = max(points, key=lambda p: p[1])
                summary[f"best_{key}"], summary[f"best_{key}_epoch"] = best[1], best[0]
    speeds = [v for _, v in finite("img_per_s") if v > 0]
    if speeds:
        summary["median_img_per_s"] = statistics.median(speeds)
    return summary


def plot_curves(run_dir: str, out: Optional[str] = None) -> str:
    """Draw `<run_dir>/curves.png` (or `out`) from metrics.jsonl; returns the PNG path."""
    from ..training.callbacks import plot_curves as draw

    require_matplotlib()  # the trainer's function skips silently without it; here it is an error
    history = load_history(run_dir)
    if not history:
        from ..errors import UsageError

        raise UsageError(f"'{run_dir}/metrics.jsonl' holds no epoch records yet (--run_dir: pick a run that "
                         "finished at least one epoch)")
    out = out or os.path.join(run_dir, "curves.png")
    draw(history, out)
    return out


def format_summary(summary: Dict[str, Any]) -> str:
    lines = [f"epochs: {summary['epochs']} (last epoch {summary['last_epoch']})"]
    if "last_train_loss" in summary:
        lines.append(f"last train loss: {summary['last_train_loss']:.4f}")
    for key in ("val_top1", "val_top5", "val_ema_top1"):
        if f"best_{key}" in summary:
            lines.append(f"{key}: best {summary[f'best_{key}']:.2f} (epoch {summary[f'best_{key}_epoch']}), "
                         f"last {summary[f'last_{key}']:.2f}")
    if "median_img_per_s" in summary:
        lines.append(f"median throughput: {summary['median_img_per_s']:.1f} img/s")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from ..cli import add_args

    parser = argparse.ArgumentParser(prog="python -m mindghost.tools.plots",
                                     description="Redraw curves.png and print a summary from a run directory.")
    parser.add_argument("--run_dir", required=True, help="a training run directory (holds metrics.jsonl)")
    add_args(parser, "out", helps={"out": "PNG path (default: <run_dir>/curves.png)"})
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not matplotlib_available():
        return 2
    history = load_history(args.run_dir)  # a missing or empty metrics.jsonl: run_main prints why, exit 2
    path = plot_curves(args.run_dir, args.out or None)
    print(format_summary(summarize_history(history)))
    print(f"wrote {path}")
    return 0


def cli() -> None:
    """Console entry point (`mindghost-plots`): exits through `runtime.run_main`."""
    from ..runtime import run_main

    run_main(main, sys.argv[1:])


if __name__ == "__main__":
    cli()
