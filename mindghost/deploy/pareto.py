"""The speed/accuracy picture of the seed papers (GhostNet fig. 1, GhostNetV2 fig. 5), measured on this device:
every registered model matching a pattern, in its inference form, batch-1 latency and batch-N throughput in
MindSpore and optionally in onnxruntime (fp32 and INT8), plotted against the published ImageNet top-1 of the
registry (`DefaultCfg.paper_top1`). Models without a published figure are measured and listed, not plotted.

    python -m mindghost.tools.benchmark --models 'ghost*' --pareto pareto.png [--peers onnxruntime]

Weights are random (speed does not depend on them); the INT8 graphs are calibrated on random input (per-tensor
MinMax), so they time the INT8 kernels, not an accuracy.
"""
import datetime
import json
import os
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np


def _median_ms(fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000.0 * float(np.median(times))


def measure_model(name: str, image_size: Optional[int], batch: int, repeats: int, warmup: int,
                  peers: Sequence[str], device: str, tmp: str) -> Dict[str, object]:
    """One model: {"mindspore": {"ms_b1", "img_per_s"}, "onnxruntime_fp32": ..., "onnxruntime_int8": ...}."""
    import mindspore as ms

    from ..cpu import accelerate_on_cpu
    from ..models import create_model, fuse_bn, get_default_cfg, reparameterize_model

    cfg = get_default_cfg(name)
    size = image_size or int(cfg.input_size[-1])
    shape = (cfg.input_size[0], size, size)
    model = reparameterize_model(create_model(name))
    model.set_train(False)
    model = fuse_bn(model, input_shape=(1,) + shape)
    out: Dict[str, object] = {"model": name, "image_size": size, "paper_top1": cfg.paper_top1}
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1,) + shape).astype(np.float32)
    xb = rng.standard_normal((batch,) + shape).astype(np.float32)
    if "onnxruntime" in peers:  # export before the CPU pass (its kernel is not exportable)
        from .export import export_model
        from .onnx import OnnxModel, make_batch_dynamic

        fixed = export_model(model, x1, os.path.join(tmp, f"{name}_b1"), "onnx")
        fp32 = os.path.join(tmp, f"{name}.onnx")
        make_batch_dynamic(fixed, fp32)
    fast = accelerate_on_cpu(model, device)
    t1, tb = ms.Tensor(x1), ms.Tensor(xb)
    t0 = time.perf_counter()
    fast(t1).asnumpy()
    first = time.perf_counter() - t0
    fast(tb).asnumpy()
    b1 = _median_ms(lambda: fast(t1).asnumpy(), repeats, warmup)
    bn = _median_ms(lambda: fast(tb).asnumpy(), max(2, repeats // 4), 1)
    out["mindspore"] = {"ms_b1": b1, "img_per_s": 1000.0 * batch / bn, "first_call_s": first}
    if "onnxruntime" in peers:
        import onnx

        from .quantize import QuantConfig, node_groups, quantize

        int8 = os.path.join(tmp, f"{name}_int8.onnx")
        calibration = rng.standard_normal((8,) + shape).astype(np.float32)
        quantize(fp32, int8, QuantConfig(False, "MinMax"), calibration, node_groups(onnx.load(fp32)))
        for key, path in (("onnxruntime_fp32", fp32), ("onnxruntime_int8", int8)):
            runner = OnnxModel(path)
            b1 = _median_ms(lambda r=runner: r(x1), repeats, warmup)
            bn = _median_ms(lambda r=runner: r(xb), max(2, repeats // 4), 1)
            out[key] = {"ms_b1": b1, "img_per_s": 1000.0 * batch / bn, "size_mb": os.path.getsize(path) / 1e6}
    return out


def measure_all(pattern: str, image_size: Optional[int], batch: int, repeats: int, warmup: int,
                peers: Sequence[str], device: str, log=print, partial_json: str = "") -> Dict[str, object]:
    """Every registered model matching `pattern`, one after another (each line printed as it is done; with
    `partial_json`, the report so far is rewritten there after each model, so an interrupted run keeps its rows)."""
    from ..models import list_models

    names = list_models(pattern)
    if not names:
        from ..errors import UsageError

        raise UsageError(f"--models '{pattern}' matches no registered model (see mindghost.list_models())")
    import platform

    from .export import machine_description

    rows: List[Dict[str, object]] = []
    report = {"pattern": pattern, "batch": batch, "repeats": repeats, "peers": list(peers), "device": device,
              "machine": machine_description(), "python": platform.python_version(),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "models": rows,
              "not_plotted": []}
    with tempfile.TemporaryDirectory(prefix="mindghost-pareto-") as tmp:
        for name in names:
            row = measure_model(name, image_size, batch, repeats, warmup, peers, device, tmp)
            rows.append(row)
            log(format_row(row, batch))
            report["not_plotted"] = [r["model"] for r in rows if r["paper_top1"] is None]
            if partial_json:
                with open(partial_json, "w") as fh:
                    json.dump(report, fh, indent=1)
    return report


def format_row(row: Dict[str, object], batch: int) -> str:
    cells = [f"{row['model']:<22}", f"top-1 {row['paper_top1'] if row['paper_top1'] is not None else '  -  ':>5}"]
    for key in ("mindspore", "onnxruntime_fp32", "onnxruntime_int8"):
        if key in row:
            r = row[key]
            cells.append(f"{key}: b1 {r['ms_b1']:7.2f} ms, b{batch} {r['img_per_s']:7.1f} img/s")
    return "  ".join(cells)


def plot(report: Dict[str, object], path: str) -> str:
    """Latency (batch 1, ms, log scale) against the published top-1, one series per runtime; returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    rows = [r for r in report["models"] if r["paper_top1"] is not None]
    keys = (("mindspore", "o"), ("onnxruntime_fp32", "s"), ("onnxruntime_int8", "^"))
    for r in rows:  # one model = one row (its top-1) of markers, one per runtime, joined and named once
        xs = [r[key]["ms_b1"] for key, _ in keys if key in r]
        ax.plot([min(xs), max(xs)], [r["paper_top1"]] * 2, color="0.8", lw=0.8, zorder=0)
        ax.annotate(r["model"], (max(xs), r["paper_top1"]), fontsize=6, xytext=(4, -2), textcoords="offset points")
    for key, marker in keys:
        pts = [(r[key]["ms_b1"], r["paper_top1"]) for r in rows if key in r]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker, label=key.replace("_", " "))
    ax.set_xscale("log")
    ax.set_xlabel("batch-1 latency (ms, median, this machine)")
    ax.set_ylabel("published ImageNet top-1 (%)")
    ax.set_title(f"{report['machine']}, {report['date']}", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write(report: Dict[str, object], png: str) -> str:
    """The figure at `png` and the numbers beside it (`<png stem>.json`); returns the JSON path."""
    plot(report, png)
    path = os.path.splitext(png)[0] + ".json"
    with open(path, "w") as fh:
        json.dump(report, fh, indent=1)
    return path
