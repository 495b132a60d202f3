"""Reproduce a recipe's published result on this hardware, and write the row MindCV publishes for the run.

    python -m mindghost.tools.reproduce -c configs/ghostnet/ghostnet_100_ascend.yaml --data_dir /path/to/imagenet \
        [--weights_only] [--ckpt_path PUBLISHED.ckpt | --pretrained_dir MIRROR] [--output_dir RUN] [overrides ...]
    bash scripts/run_reproduce.sh CONFIG DATA_DIR [NUM_WORKERS=8] [options ...]      # the msrun form

In order: (a) the quick check: the recipe model's published weights (`--ckpt_path`, else `mindghost.hub`'s
published file, found in `--pretrained_dir` first) validated on the val split with the recipe's eval
preprocessing, against the recipe's `expected.top1`; (b) unless `--weights_only`, the training run (train.py,
the recipe as is; rerunning the same command resumes it, a finished run is not retrained); (c) the final
validation of the run's best checkpoint and the report: `reproduce.md` and `reproduce.json` in the run
directory, with MindCV's table columns for this run, the published row, the deltas and a verdict line.

ms/step and img/s are medians over the intervals between the loop's loss reads (`step_intervals` in
metrics.jsonl), epochs 2 and later (the first epoch's warm-up and the graph compile excluded); the compile
seconds are measured around the first step (`compile_s`). Exit code 0 when reproduced, 1 when not, 2 on a
refusal (no expected figures, a val split that is not the recipe's dataset, an unfinished run).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any, Dict, List, Optional, Tuple

from ..cli import str2bool
from ..errors import UsageError
from ..training.config import parse_args_with_recipe

DEFAULT_TOLERANCE = 0.3
QUICK_CHECK = "quick_check.json"
# MindCV's model-zoo columns, in its order: (key, heading)
COLUMNS: List[Tuple[str, str]] = [
    ("model", "model"), ("params_m", "params (M)"), ("cards", "cards"), ("global_batch", "global batch"),
    ("device", "device"), ("mindspore", "MindSpore"), ("jit_level", "jit level / mode"),
    ("compile_s", "graph compile (s)"), ("ms_per_step", "ms/step"), ("img_per_s", "img/s"),
    ("top1", "top-1 (%)"), ("top5", "top-5 (%)"),
]
_NUMERIC = ("params_m", "compile_s", "ms_per_step", "img_per_s", "top1", "top5")


def _own_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mindghost.tools.reproduce", allow_abbrev=False,
        description="Check a recipe against its published numbers on this hardware (quick check with the published "
                    "weights, the training run, the report). Other options are the recipe's (train.py --help).")
    p.add_argument("--weights_only", type=str2bool, nargs="?", const=True, default=False,
                   help="only the quick check with the published weights (no training)")
    p.add_argument("--quick_check", type=str2bool, nargs="?", const=True, default=True,
                   help="validate the published weights first (false: skip, e.g. a recipe without published "
                        "weights)")
    p.add_argument("--ckpt_path", default="", help="the published weights for the quick check (default: "
                                                     "mindghost.hub's published file for the recipe's model)")
    p.add_argument("--pretrained_dir", default="", help="folder searched first for the published weight file")
    p.add_argument("--tolerance", type=float, default=None,
                   help=f"top-1 points within which a result counts as reproduced (default: the recipe's "
                        f"expected.tolerance, else {DEFAULT_TOLERANCE})")
    p.add_argument("--stage", default="all", choices=["all", "check", "train", "report", "run_dir"],
                   help="all (one device) or one step; the msrun launcher runs check, then train.py under msrun, "
                        "then report (run_dir: print the run directory and exit)")
    return p


def parse(argv: Optional[List[str]]):
    """(own options, Config, recipe path, the recipe overrides as given) from the command line."""
    opts, rest = _own_parser().parse_known_args(argv)
    cfg, _, _ = parse_args_with_recipe(rest, description="reproduce: recipe options")
    recipe = ""
    for i, tok in enumerate(rest):
        if tok in ("-c", "--config") and i + 1 < len(rest):
            recipe = rest[i + 1]
        elif tok.startswith("--config="):
            recipe = tok.split("=", 1)[1]
    if not recipe:
        raise UsageError("reproduce needs the recipe: -c configs/<family>/<recipe>.yaml")
    overrides = _without(rest, ("-c", "--config"))
    return opts, cfg, recipe, overrides


def _without(args: List[str], flags) -> List[str]:
    """`args` without `flags` and their values (`--flag value` or `--flag=value`)."""
    out, skip = [], False
    for tok in args:
        if skip:
            skip = False
            continue
        name = tok.split("=", 1)[0]
        if name in flags:
            skip = "=" not in tok
            continue
        out.append(tok)
    return out


def run_directory(cfg, recipe: str) -> str:
    """The run directory: --output_dir (or the recipe's), else runs/reproduce-<recipe name>, fixed so that
    rerunning the same command resumes."""
    return cfg.output_dir or os.path.join("runs", "reproduce-" + os.path.splitext(os.path.basename(recipe))[0])


def check_expected(cfg, recipe: str) -> Dict[str, Any]:
    """The recipe's expected block; refuses a recipe with no published top-1."""
    exp = cfg.expected or {}
    if exp.get("top1") is None:
        why = f" (its expected block says: {exp['source']})" if exp.get("source") else \
            " (it has no 'expected' block)"
        raise UsageError(f"{recipe} states no published top-1{why}: there is nothing to reproduce against. "
                             "Add an 'expected:' block with top1 and source to the recipe (see docs/reproduce.md) "
                             "if a figure is published.")
    return exp


def check_val_classes(cfg, recipe: str) -> int:
    """Refuse a val split whose class folders do not number the recipe's num_classes (not the recipe's dataset)."""
    root = os.path.join(cfg.data_dir, cfg.val_split)
    if not os.path.isdir(root):
        raise UsageError(f"the val split '{root}' does not exist: pass --data_dir (and --val_split) of the "
                             f"dataset {recipe} was published on")
    n = sum(1 for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if n != cfg.num_classes:
        raise UsageError(
            f"'{root}' has {n} class folders, but {recipe} was published on a dataset of {cfg.num_classes} classes: "
            f"this val split does not look like the recipe's dataset, so its top-1 cannot be compared with the "
            f"published {cfg.expected['top1']}. Point --data_dir at that dataset (e.g. ImageNet-1k for 1000 classes).")
    return n


def tolerance_of(opts, exp: Dict[str, Any]) -> float:
    if opts.tolerance is not None:
        return opts.tolerance
    return exp["tolerance"] if exp.get("tolerance") is not None else DEFAULT_TOLERANCE


def verdict(top1: float, published: float, tolerance: float, what: str = "top-1") -> Tuple[bool, str]:
    """(reproduced, the plain verdict line): reproduced when |top1 - published| <= tolerance."""
    delta = top1 - published
    core = f"{what} {top1:.2f} vs published {published:.2f} ({delta:+.2f}, tolerance {tolerance:.2f})"
    if abs(delta) <= tolerance + 1e-9:
        return True, f"reproduced: {core}"
    side = "below" if delta < 0 else "above"
    return False, f"NOT reproduced: {core}: {side} by {abs(delta) - tolerance:.2f} points beyond the tolerance"


def _validate_main():
    """validate.py's main(argv) (the repository-root script), called in process."""
    import importlib.util

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.spec_from_file_location("mindghost_validate_entry", os.path.join(root, "validate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _log(msg: str) -> None:
    from ..training.logs import LOG

    if LOG.handlers:
        LOG.info(msg)
    else:
        print(msg, file=sys.stderr)


def _eval_args(overrides: List[str]) -> List[str]:
    """The recipe overrides for validate.py: without the weights options reproduce sets itself."""
    return _without(overrides, ("--ckpt_path", "--pretrained", "--pretrained_dir", "--ema", "--output_dir",
                                "--resume", "--overwrite", "--distribute"))


def quick_check(opts, cfg, recipe: str, overrides: List[str], run_dir: str, tolerance: float) -> Dict[str, Any]:
    """Validate the published weights on this data with the recipe's eval preprocessing; writes quick_check.json."""
    exp = cfg.expected
    weights = ["--ckpt_path", opts.ckpt_path, "--pretrained", "False"] if opts.ckpt_path else \
        ["--pretrained", "True"] + (["--pretrained_dir", opts.pretrained_dir] if opts.pretrained_dir else [])
    _log(f"quick check: the published weights of {cfg.model} on {cfg.data_dir}/{cfg.val_split}")
    res = _validate_main()(["-c", recipe, *_eval_args(overrides), *weights, "--ema", "False",
                            "--output_dir", os.path.join(run_dir, "quick_check")])
    ok, line = verdict(res["top1"], exp["top1"], tolerance, "published weights: top-1")
    out = {"weights": res["checkpoint"], "top1": res["top1"], "top5": res["top5"], "num_samples": res["num_samples"],
           "image_size": res["image_size"], "crop_pct": res["crop_pct"], "interpolation": res["interpolation"],
           "published_top1": exp["top1"], "published_weights": exp.get("weights"), "tolerance": tolerance,
           "reproduced": ok, "verdict": line}
    if not ok:
        out["hint"] = (f"the weights {res['checkpoint']} and the recipe {recipe} disagree with the published figure on "
                       f"this data (eval: {res['image_size']} px, crop_pct {res['crop_pct']}, {res['interpolation']}): "
                       "check that the val split is the publisher's (same images, same class order) and that the "
                       "weights are the ones the figure belongs to"
                       + (f" ({exp['weights']})" if exp.get("weights") else ""))
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, QUICK_CHECK), "w") as fh:
        json.dump(out, fh, indent=2)
    _log(line)
    return out


def train(cfg, recipe: str, overrides: List[str], run_dir: str, distribute: bool = False) -> None:
    """train.py on one device in a child process (its own MindSpore context); resumes an interrupted run, skips
    a finished one."""
    if os.path.isfile(os.path.join(run_dir, "summary.json")):
        _log(f"{run_dir} holds a finished run (summary.json): not retrained")
        return
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    argv = [sys.executable, os.path.join(root, "train.py"), "-c", recipe,
            *_without(overrides, ("--output_dir", "--ckpt_path", "--pretrained", "--pretrained_dir", "--distribute")),
            "--output_dir", run_dir, "--distribute", str(distribute)]
    _log("training: " + " ".join(argv[1:]))
    code = subprocess.call(argv)
    if code != 0:
        raise RuntimeError(f"train.py exited with code {code}; fix what it reported and rerun the same command "
                           "(it resumes from the last checkpoint)")


def steady_speed(history: List[Dict[str, Any]], global_batch: int) -> Dict[str, Any]:
    """Median ms/step (over steps: an interval of n steps counts n times) and img/s over the step intervals of
    epochs 2 and later (epoch 1 only when the run has one epoch, marked `warmup_included`), and the compile
    seconds of the first recorded first step."""
    compile_s = next((h["compile_s"] for h in history if h.get("compile_s") is not None), None)
    later = [iv for h in history if h.get("epoch", 0) >= 2 for iv in h.get("step_intervals", [])]
    intervals = later or [iv for h in history for iv in h.get("step_intervals", [])]
    if not intervals:
        return {"compile_s": compile_s, "ms_per_step": None, "img_per_s": None, "intervals": 0,
                "warmup_included": False}
    ms = _step_median([(int(n), 1000.0 * s / n) for n, s in intervals])
    return {"compile_s": compile_s, "ms_per_step": ms, "img_per_s": global_batch * 1000.0 / ms,
            "intervals": len(intervals), "warmup_included": not later}


def _step_median(weighted: List[Tuple[int, float]]) -> float:
    """The median over steps of (steps, ms per step) intervals: each interval counts once per step it holds."""
    values = sorted(v for n, v in weighted for _ in range(n))
    return statistics.median(values)


def count_params_m(model_name: str, num_classes: int, in_channels: int) -> float:
    """Parameters in millions, counted as MindCV counts them (every parameter, BatchNorm statistics included)."""
    from ..models import create_model

    model = create_model(model_name, num_classes=num_classes, in_channels=in_channels)
    return sum(p.size for p in model.get_parameters()) / 1e6


def _jit_level(mode: str) -> str:
    import mindspore as ms

    try:
        level = ms.get_context("jit_level")
    except (ValueError, TypeError, AttributeError):  # older MindSpore: only jit_config
        level = (ms.get_context("jit_config") or {}).get("jit_level", "")
    return f"{level or 'default'} / {mode}"


def final_row(cfg, recipe: str, overrides: List[str], run_dir: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Validate the finished run's best checkpoint (validate.json in the run directory) and assemble its row."""
    from ..training.callbacks import read_metrics

    summary_path = os.path.join(run_dir, "summary.json")
    if not os.path.isfile(summary_path):
        raise UsageError(f"{run_dir} holds no finished run (no summary.json): rerun the same command to train "
                             "(it resumes an interrupted run), then the report is written")
    with open(summary_path) as fh:
        summary = json.load(fh)
    env = {}
    if os.path.isfile(os.path.join(run_dir, "env.json")):
        with open(os.path.join(run_dir, "env.json")) as fh:
            env = json.load(fh)
    ckpt = summary.get("best_checkpoint") or summary["last_checkpoint"]
    ema = bool((summary.get("best") or {}).get("key", "").startswith("val_ema"))
    res = _validate_main()(["-c", recipe, *_eval_args(overrides), "--ckpt_path", ckpt, "--pretrained", "False",
                            "--ema", str(ema), "--output_dir", run_dir])
    speed = steady_speed(read_metrics(os.path.join(run_dir, "metrics.jsonl")), summary["global_batch"])
    row = {"model": res["model"], "params_m": count_params_m(res["model"], cfg.num_classes, cfg.in_channels),
           "cards": summary.get("devices"), "global_batch": summary.get("global_batch"),
           "device": env.get("device", res["device"]), "mindspore": env.get("mindspore"),
           "jit_level": _jit_level(cfg.mode), "compile_s": speed["compile_s"], "ms_per_step": speed["ms_per_step"],
           "img_per_s": speed["img_per_s"], "top1": res["top1"], "top5": res["top5"]}
    detail = {"checkpoint": ckpt, "ema": ema, "epochs": summary.get("epochs"), "num_samples": res["num_samples"],
              "speed_intervals": speed["intervals"], "warmup_included": speed["warmup_included"]}
    return row, detail


def published_row(cfg) -> Dict[str, Any]:
    exp = cfg.expected
    return {"model": cfg.model, **{k: exp.get(k) for k, _ in COLUMNS if k != "model"}}


def deltas(row: Dict[str, Any], pub: Dict[str, Any]) -> Dict[str, Any]:
    """this run - published, for the numeric columns both have (None where one is missing)."""
    return {k: (row[k] - pub[k]) if row.get(k) is not None and pub.get(k) is not None else None for k in _NUMERIC}


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}" if key in ("top1", "top5", "params_m") else f"{value:.1f}"
    return str(value)


def _delta_cell(key: str, value: Any) -> str:
    if value is None:
        return ""
    return f"{value:+.2f}" if key in ("top1", "top5", "params_m") else f"{value:+.1f}"


def render_markdown(report: Dict[str, Any]) -> str:
    """reproduce.md: the verdict, MindCV's columns for this run and the published row, the deltas, the notes."""
    lines = [f"# Reproduce: {report['recipe']}", "", f"**{report['verdict']}**", ""]
    heads = ["row"] + [h for _, h in COLUMNS]
    lines += ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    rows = [("this run", report.get("this_run"), _cell), ("published", report["published"], _cell),
            ("delta", report.get("delta"), _delta_cell)]
    for label, row, fmt in rows:
        if row:
            lines.append("| " + " | ".join([label] + [fmt(k, row.get(k)) if k in row else "" for k, _ in COLUMNS])
                         + " |")
    qc = report.get("quick_check")
    lines += [""]
    if qc:
        lines += [f"Quick check (published weights `{os.path.basename(qc['weights'])}` on this data, eval "
                  f"{qc['image_size']} px, crop_pct {qc['crop_pct']}, {qc['interpolation']}): top-1 {qc['top1']:.2f}, "
                  f"top-5 {qc['top5']:.2f} on {qc['num_samples']} images: {qc['verdict']}.", ""]
        if qc.get("hint"):
            lines += [qc["hint"] + ".", ""]
    notes = report.get("notes", [])
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def write_report(run_dir: str, report: Dict[str, Any]) -> None:
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "reproduce.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    with open(os.path.join(run_dir, "reproduce.md"), "w") as fh:
        fh.write(render_markdown(report))


def _notes(cfg, exp: Dict[str, Any], detail: Optional[Dict[str, Any]]) -> List[str]:
    notes = [f"published: {exp['source']}"]
    if exp.get("speed_source"):
        notes.append(f"published speed: {exp['speed_source']}")
    if exp.get("also_reported"):
        notes.append(f"also reported: {exp['also_reported']}")
    notes.append("params: every parameter, BatchNorm statistics included (as MindCV counts)")
    if detail:
        when = "epoch 1 (a one-epoch run: its warm-up is included)" if detail["warmup_included"] else \
            "epochs 2 and later (compile and the first epoch's warm-up excluded)"
        notes.append(f"ms/step and img/s: median over the steps of {detail['speed_intervals']} intervals between loss "
                     f"reads, {when}; "
                     "graph compile: the first step of the first training process")
        notes.append(f"top-1/top-5: {'EMA' if detail['ema'] else 'raw'} weights of {detail['checkpoint']} "
                     f"({detail['epochs']} epochs) on {detail['num_samples']} images")
    return notes


def reproduce(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Run the stages the command asks for; returns the report (also written as reproduce.json / .md)."""
    opts, cfg, recipe, overrides = parse(argv)
    exp = check_expected(cfg, recipe)
    check_val_classes(cfg, recipe)
    run_dir = run_directory(cfg, recipe)
    if opts.stage == "run_dir":
        print(run_dir)
        return {"run_dir": run_dir}
    tol = tolerance_of(opts, exp)
    qc = None
    if opts.stage in ("all", "check") and opts.quick_check:
        qc = quick_check(opts, cfg, recipe, overrides, run_dir, tol)
    elif os.path.isfile(os.path.join(run_dir, QUICK_CHECK)):
        with open(os.path.join(run_dir, QUICK_CHECK)) as fh:
            qc = json.load(fh)
    report: Dict[str, Any] = {"recipe": recipe, "run_dir": run_dir, "tolerance": tol,
                              "columns": [h for _, h in COLUMNS], "published": published_row(cfg),
                              "quick_check": qc}
    if opts.weights_only:
        if qc is None:
            raise UsageError("--weights_only with --quick_check false does nothing: drop one of them")
        report.update(reproduced=qc["reproduced"], verdict=qc["verdict"], notes=_notes(cfg, exp, None))
        write_report(run_dir, report)
        print(qc["verdict"])
        return report
    if qc is not None and not qc["reproduced"] and opts.stage in ("all", "check"):
        raise UsageError(f"{qc['verdict']}. {qc.get('hint', '')}. Training was not started; fix the data or the "
                             "weights, or pass --quick_check false to train anyway")
    if opts.stage == "check":
        return report
    if opts.stage in ("all", "train"):
        train(cfg, recipe, overrides, run_dir)
        if opts.stage == "train":
            return report
    row, detail = final_row(cfg, recipe, overrides, run_dir)
    ok, line = verdict(row["top1"], exp["top1"], tol)
    report.update(this_run=row, delta=deltas(row, report["published"]), reproduced=ok, verdict=line,
                  detail=detail, notes=_notes(cfg, exp, detail))
    write_report(run_dir, report)
    _log(f"report: {os.path.join(run_dir, 'reproduce.md')}")
    print(line)
    return report


def main(argv: Optional[List[str]] = None) -> int:
    report = reproduce(argv)
    return 0 if report.get("reproduced", True) else 1


def cli() -> None:
    """Console entry point (`mindghost-reproduce`): exits through `runtime.run_main`."""
    from ..runtime import run_main

    run_main(main, sys.argv[1:])


if __name__ == "__main__":
    cli()
