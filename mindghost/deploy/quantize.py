"""Static INT8 post-training quantization of an fp32 ONNX export with onnxruntime.quantization (QDQ format), with a
small search over the choices that public reports say decide the accuracy of depthwise networks.

The choices (`QuantConfig`):
- weights per tensor or per output channel. onnxruntime#11415: per-channel static quantization took MobileNetV3
  to ~54% against ~69% per tensor; RepGhost#2 reports the opposite need for depthwise layers.
- the calibration: MinMax, Entropy or Percentile (onnxruntime's `CalibrationMethod`).
- node groups kept in fp32 (`node_groups`): the depthwise convolutions (the GhostNet authors' advice,
  iamhankai/ghostnet.pytorch#28), the squeeze-excite hard-sigmoid gate (`relu6(x + 3) / 6`, exported as
  Add-Clip-Div-Mul; reported mis-mapped), the stem convolution and the classifier.

`search` quantizes every candidate of a search space (`search_space`), scores each on a held-out
calibration-validation set (labelled train images the calibration did not see) and keeps the best: the highest
top-1 there, then the highest agreement with the fp32 model's top-1, then the smallest logit error. Calibration
ranges are computed once per calibration method and reused (onnxruntime's calibration cache, when it has one).
"""
import inspect
import logging
import os
import tempfile
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

GROUPS = ("depthwise", "se_gate", "stem", "classifier")
METHODS = ("MinMax", "Entropy", "Percentile")
SEARCHES = ("full", "quick", "none")


class QuantConfig(NamedTuple):
    """One INT8 recipe: per-channel weights or not, the calibration method, the node groups kept fp32."""

    per_channel: bool
    method: str
    fp32: Tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return (f"{'per-channel' if self.per_channel else 'per-tensor'} {self.method}, fp32: "
                f"{'+'.join(self.fp32) or 'none'}")

    def as_dict(self) -> Dict[str, object]:
        return {"per_channel": self.per_channel, "calibration": self.method, "fp32_groups": list(self.fp32),
                "name": self.name}


def node_groups(model) -> Dict[str, List[str]]:
    """Names of the nodes of each group in `GROUPS`, for an onnx.ModelProto of a Ghost export.

    depthwise: Conv nodes with group > 1 and one input channel per group (the cheap operations and the stride-2
    depthwise convs); se_gate: each hard-sigmoid gate, `Add(+3) -> Clip(0, 6) -> Div(6) -> Mul(x, .)`, or a
    HardSigmoid/Sigmoid node with the Mul it feeds; stem: the Conv reading the graph input; classifier: the Gemm /
    MatMul nodes."""
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: Dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    inputs = {i.name for i in graph.input} - set(weights)
    groups: Dict[str, List[str]] = {g: [] for g in GROUPS}

    def attr(node, key, default=None):
        for a in node.attribute:
            if a.name == key:
                return a.i
        return default

    def only_consumer(node, op_type):
        found = consumers.get(node.output[0], [])
        return found[0] if len(found) == 1 and found[0].op_type == op_type else None

    for node in graph.node:
        if node.op_type == "Conv":
            w = weights.get(node.input[1])
            if (attr(node, "group", 1) or 1) > 1 and w is not None and len(w.dims) == 4 and w.dims[1] == 1:
                groups["depthwise"].append(node.name)
            if node.input[0] in inputs:
                groups["stem"].append(node.name)
        elif node.op_type in ("Gemm", "MatMul"):
            groups["classifier"].append(node.name)
        elif node.op_type == "Clip":
            div = only_consumer(node, "Div")
            mul = only_consumer(div, "Mul") if div is not None else None
            if mul is not None:
                before = producer.get(node.input[0])
                chain = ([before] if before is not None and before.op_type == "Add" else []) + [node, div, mul]
                groups["se_gate"] += [n.name for n in chain]
        elif node.op_type in ("HardSigmoid", "Sigmoid"):
            mul = only_consumer(node, "Mul")
            groups["se_gate"] += [node.name] + ([mul.name] if mul is not None else [])
    return groups


def search_space(search: str, stage: int, best: Optional[QuantConfig] = None,
                 helped: Sequence[str] = (), present: Sequence[str] = GROUPS) -> List[QuantConfig]:
    """The candidates of one stage. Stage 1: weight granularity x calibration, everything INT8 (full: 2 x 3;
    quick: 2 x MinMax; none: per-tensor MinMax). Stage 2, from stage 1's best: each group kept fp32 alone, and all
    together (quick: all together only). Stage 3: the groups that each helped in stage 2, together (when that is a
    new combination). Groups with no node in the model (`present`) are left out."""
    if stage == 1:
        if search == "none":
            return [QuantConfig(False, "MinMax")]
        methods = METHODS if search == "full" else ("MinMax",)
        return [QuantConfig(pc, m) for pc in (False, True) for m in methods]
    if search == "none" or best is None:
        return []
    groups = tuple(g for g in GROUPS if g in present)
    if stage == 2:
        singles = [(g,) for g in groups] if search == "full" else []
        return [best._replace(fp32=fp32) for fp32 in singles + [groups] if fp32]
    combo = tuple(g for g in groups if g in helped)
    if len(combo) >= 2 and combo != groups:
        return [best._replace(fp32=combo)]
    return []


class ArrayReader:
    """onnxruntime `CalibrationDataReader` over an in-memory (N, C, H, W) array, in batches; supports the strided
    calibration (`set_range`) that keeps the histogram calibrators' memory bounded."""

    def __init__(self, input_name: str, images: np.ndarray, batch_size: int = 16):
        self.input_name = input_name
        self.batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
        self.set_range(0, len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._iter = iter(self.batches[start_index:end_index])

    def get_next(self):
        batch = next(self._iter, None)
        return None if batch is None else {self.input_name: np.ascontiguousarray(batch, np.float32)}

    def rewind(self) -> None:
        self.set_range(0, len(self.batches))


def _stride(n: int, at_most: int = 4) -> int:
    """The largest divisor of n up to `at_most` (onnxruntime's strided calibration needs one)."""
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def quantize(fp32_path: str, out_path: str, config: QuantConfig, calibration: np.ndarray, groups: Dict[str, List[str]],
             cache_dir: Optional[str] = None, reduce_range: bool = False) -> str:
    """Write the static QDQ INT8 model of `config` (activations uint8 asymmetric, weights int8 symmetric); returns
    `out_path`. `cache_dir`: reuse calibration ranges per method across calls (onnxruntime >= the version that
    added `calibration_cache_path`; older ones calibrate every time)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from .onnx import OnnxModel

    reader = ArrayReader(OnnxModel(fp32_path).input_name, calibration)
    kwargs = {}
    if cache_dir and "calibration_cache_path" in inspect.signature(quantize_static).parameters:
        kwargs["calibration_cache_path"] = os.path.join(cache_dir, f"ranges_{config.method}.json")
    exclude = [name for g in config.fp32 for name in groups.get(g, [])]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime's "consider pre-processing" advice, twice per candidate
    try:
            quantize_static(fp32_path, out_path, reader, quant_format=QuantFormat.QDQ, per_channel=config.per_channel,
                        reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=exclude, calibrate_method=getattr(CalibrationMethod, config.method),
                        extra_options={"CalibStridedMinMax": _stride(len(reader))}, **kwargs)
    finally:
        root.setLevel(level)
    return out_path


def score(model_path: str, images: np.ndarray, labels: np.ndarray, reference: np.ndarray,
          batch_size: int = 50) -> Dict[str, float]:
    """top-1 (percent) on labelled images, top-1 agreement with `reference` logits (percent), mean squared logit
    error against them."""
    from .onnx import OnnxModel

    model = OnnxModel(model_path)
    logits = np.concatenate([model(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    pred = logits.argmax(1)
    return {"top1": 100.0 * float((pred == labels).mean()),
            "agree": 100.0 * float((pred == reference.argmax(1)).mean()),
            "logit_mse": float(((logits - reference) ** 2).mean())}


def rank_key(result: Dict[str, object]):
    """Best first: held-out top-1, then agreement with fp32, then logit error, then fewer fp32 groups."""
    s = result["holdout"]
    return (-s["top1"], -s["agree"], s["logit_mse"], len(result["config"]["fp32_groups"]))


def search(fp32_path: str, out_path: str, calibration: np.ndarray, holdout: Tuple[np.ndarray, np.ndarray],
           search_mode: str = "full", reduce_range: bool = False, log=print) -> Dict[str, object]:
    """Quantize the candidates of `search_space` stage by stage, score each on `holdout` (images, labels), write
    the best to `out_path`. Returns {"chosen": config dict, "why": str, "candidates": [...], "groups": {group:
    node count}, "holdout_fp32": score of the fp32 model}."""
    import onnx

    if search_mode not in SEARCHES:
        raise ValueError(f"search must be one of {', '.join(SEARCHES)}, got '{search_mode}'")
    groups = node_groups(onnx.load(fp32_path))
    images, labels = holdout
    from .onnx import OnnxModel

    model = OnnxModel(fp32_path)
    reference = np.concatenate([model(images[i:i + 50]) for i in range(0, len(images), 50)])
    fp32_score = score(fp32_path, images, labels, reference)
    log(f"held-out fp32: top-1 {fp32_score['top1']:.2f} on {len(labels)} images; node groups: "
        + ", ".join(f"{g} {len(n)}" for g, n in groups.items()))
    results: List[Dict[str, object]] = []
    best_path = None
    with tempfile.TemporaryDirectory(prefix="mindghost-quant-") as tmp:
        def run(configs: List[QuantConfig]) -> None:
            nonlocal best_path
            for config in configs:
                if any(r["config"]["name"] == config.name for r in results):
                    continue
                path = os.path.join(tmp, f"candidate_{len(results)}.onnx")
                quantize(fp32_path, path, config, calibration, groups, cache_dir=tmp, reduce_range=reduce_range)
                s = score(path, images, labels, reference)
                results.append({"config": config.as_dict(), "holdout": s, "path": path})
                log(f"  {config.name:<58} held-out top-1 {s['top1']:6.2f}  agree {s['agree']:6.2f}  "
                    f"logit mse {s['logit_mse']:.4g}")

        present = [g for g in GROUPS if groups[g]]
        run(search_space(search_mode, 1, present=present))
        best = min(results, key=rank_key)
        stage1 = QuantConfig(best["config"]["per_channel"], best["config"]["calibration"])
        run(search_space(search_mode, 2, stage1, present=present))
        base = rank_key(best)
        helped = [r["config"]["fp32_groups"][0] for r in results
                  if len(r["config"]["fp32_groups"]) == 1 and rank_key(r) < base]
        run(search_space(search_mode, 3, stage1, helped=helped, present=present))
        ranked = sorted(results, key=rank_key)
        chosen = ranked[0]
        os.replace(chosen["path"], out_path)
    for r in results:
        del r["path"]
    c, s = chosen["config"], chosen["holdout"]
    runner_up = ranked[1] if len(ranked) > 1 else None
    why = (f"highest held-out top-1 of {len(results)} candidates: {s['top1']:.2f} (fp32 {fp32_score['top1']:.2f}), "
           f"agreement with fp32 {s['agree']:.2f}%, logit mse {s['logit_mse']:.4g}")
    if runner_up is not None:
        why += (f"; next best: {runner_up['config']['name']} at {runner_up['holdout']['top1']:.2f} / "
                f"{runner_up['holdout']['agree']:.2f}%")
    return {"chosen": c, "why": why, "candidates": ranked, "groups": {g: len(n) for g, n in groups.items()},
            "holdout_fp32": fp32_score, "holdout_images": int(len(labels)),
            "calibration_images": int(len(calibration)), "search": search_mode, "reduce_range": reduce_range,
            "activations": "uint8 (asymmetric)", "weights": "int8 (symmetric)", "format": "QDQ"}
