"""An exported ONNX file (fp32, or INT8 from `mindghost.tools.quantize`) as a model, run by onnxruntime, and its
evaluation with validate.py's data pipeline and counting.

`mindghost.tools.export` writes `<stem>.onnx` and `<stem>.json`; the JSON records the model, class count, class
names and the eval preprocessing (image size, crop_pct, interpolation, mean/std, channels). `setup_from_export`
turns it into the same `InferenceSetup` a checkpoint gives (`mindghost.inference.resolve_inference_setup`), so
validate.py and predict apply the same preprocessing to an ONNX file as to the checkpoint it came from, and
`evaluate_onnx` counts top-1/top-5 with `mindghost.training.evaluate.evaluate` over `mindghost.data.build_eval_loader`.
"""
import json
import os
import time
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import UsageError

__all__ = ["OnnxModel", "evaluate_onnx", "export_json_path", "make_batch_dynamic", "measure_speed",
           "export_meta", "read_export_json", "sample_shape", "setup_from_export", "validate_onnx"]


def export_json_path(onnx_path: str) -> str:
    """`<stem>.json` next to `<stem>.onnx`: where export and quantize write what a deployment must apply."""
    return os.path.splitext(onnx_path)[0] + ".json"


def read_export_json(onnx_path: str, flag: str = "--ckpt_path") -> Dict[str, Any]:
    """The export/quantize report of `onnx_path`. UsageError when the ONNX file or its JSON is missing or unreadable
    (without it the preprocessing, class count and class names are unknown)."""
    if not os.path.isfile(onnx_path):
        raise UsageError(f"{flag}: ONNX file not found: '{onnx_path}'")
    path = export_json_path(onnx_path)
    if not os.path.isfile(path):
        raise UsageError(f"{flag} '{onnx_path}': its export JSON '{path}' is missing, so the model's preprocessing and "
                         "classes are unknown; keep the .json that mindghost.tools.export (or quantize) wrote next to "
                         "the .onnx file")
    try:
        with open(path, encoding="utf-8") as fh:
            report = json.load(fh)
    except ValueError as e:
        raise UsageError(f"'{path}' is not valid JSON ({e}); export the model again") from e
    missing = [k for k in ("model", "num_classes", "preprocessing") if not report.get(k)]
    if missing:
        raise UsageError(f"'{path}' lacks {', '.join(missing)}: it was not written by mindghost.tools.export; "
                         "export the model again")
    return report


def export_meta(report: Mapping[str, Any]) -> Dict[str, Any]:
    """An export report (`mindghost.tools.export`'s JSON) in the shape of a checkpoint's meta, so that
    `inference.resolve_inference_setup` reads it as it reads a checkpoint's record. Image size and class count
    fall back to the recorded input / output shapes."""
    pre = report.get("preprocessing") or {}
    config = {k: pre.get(k) for k in ("crop_pct", "interpolation", "mean", "std", "in_channels")}
    config["image_size"] = pre.get("image_size") or report["input_shape"][-1]
    meta = {"model": report.get("model"), "num_classes": report.get("num_classes") or report["output_shape"][-1],
            "config": config}
    if report.get("class_names"):
        meta["class_names"] = report["class_names"]
    return meta


def setup_from_export(report: Mapping[str, Any], model: Optional[str] = None,
                      explicit: Optional[Mapping[str, Any]] = None, source: str = "the ONNX file"):
    """The `InferenceSetup` of an export report: its recorded model, classes and preprocessing, with the same
    precedence as a checkpoint's record (explicit values win with a warning; another model or class count is
    refused with CheckpointError)."""
    from ..inference import resolve_inference_setup

    return resolve_inference_setup(export_meta(report), model=model, explicit=explicit, source=source,
                                   origin="the export JSON's")


class OnnxModel:
    """An ONNX classifier in onnxruntime's CPU provider: `model(x)` maps an (N, C, H, W) float32 array to (N, classes)
    float32 logits. A graph exported with a fixed batch B runs any N in chunks of B (the last one padded)."""

    def __init__(self, path: str, threads: int = 0, spinning: bool = True):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = list(inp.shape)  # ints, or strings for symbolic dimensions
        self.batch = inp.shape[0] if isinstance(inp.shape[0], int) else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.batch is None or x.shape[0] == self.batch:
            return self.session.run(None, {self.input_name: x})[0]
        out = []
        for start in range(0, x.shape[0], self.batch):
            chunk = x[start:start + self.batch]
            n = chunk.shape[0]
            if n < self.batch:
                chunk = np.concatenate([chunk, np.zeros((self.batch - n,) + chunk.shape[1:], np.float32)])
            out.append(self.session.run(None, {self.input_name: chunk})[0][:n])
        return np.concatenate(out)


class _Logits:
    def __init__(self, array: np.ndarray):
        self.array = array

    def asnumpy(self) -> np.ndarray:
        return self.array


class _EvalNet:
    """`OnnxModel` with the face `mindghost.training.evaluate.evaluate` calls: set_train, and tensors in and out."""

    def __init__(self, model: OnnxModel):
        self.model = model

    def set_train(self, mode: bool = True) -> "_EvalNet":
        return self

    def __call__(self, x) -> _Logits:
        return _Logits(self.model(x.asnumpy() if hasattr(x, "asnumpy") else x))


def make_batch_dynamic(src: str, dst: str, name: str = "batch", min_opset: int = 13) -> None:
    """Rewrite `src` (an export with a fixed batch of 1) to `dst` with a symbolic batch dimension on every graph
    input and output, at default-domain opset `min_opset` or above (onnx's version converter; per-channel
    QuantizeLinear/DequantizeLinear need opset 13, MindSpore exports opset 11). Intermediate shape records are
    dropped (onnxruntime infers them again). A Reshape whose constant target shape starts with the exported batch
    (MindSpore lowers ExpandDims, e.g. in Ghost-ResNet's classifier, to such a Reshape) gets 0 there, ONNX's
    "copy the input's dimension"; a Resize to constant `sizes` (GhostNetV3's ResizeNearestNeighbor, whose sizes
    hold batch 1: onnxruntime then silently returns batch 1 and later ops broadcast sample 0's attention over
    the batch) gets its sizes' batch from its input, computed in the graph. Checked before `dst` is written:
    batch 2 must equal two batch-1 runs of `src` in onnxruntime (within 1e-5 relative), else `UsageError` names
    the graph (export with a fixed batch)."""
    import onnx
    from onnx import numpy_helper, version_converter

    model = onnx.load(src)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < min_opset:
        model = version_converter.convert_version(model, min_opset)
    dims0 = [v.type.tensor_type.shape.dim[0].dim_value for v in model.graph.input if v.type.tensor_type.shape.dim]
    if any(d != 1 for d in dims0):
        from ..errors import UsageError

        raise UsageError(f"{src}: inputs of batch {dims0}; make_batch_dynamic takes an export with batch 1")
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = name
    consts = {t.name for t in model.graph.initializer} | {o for n in model.graph.node if n.op_type == "Constant"
                                                          for o in n.output}
    # only reshapes of computed tensors carry the batch (a constant reshaped to (1, C, 1, 1) does not)
    shapes = {n.input[1] for n in model.graph.node
              if n.op_type == "Reshape" and len(n.input) > 1 and n.input[0] not in consts}
    tensors = [t for t in model.graph.initializer if t.name in shapes]
    tensors += [a.t for n in model.graph.node if n.op_type == "Constant" and n.output[0] in shapes
                for a in n.attribute if a.name == "value"]
    for tensor in tensors:
        target = numpy_helper.to_array(tensor)
        if target.ndim == 1 and target.size > 1 and target[0] == 1:
            target = target.copy()
            target[0] = 0
            tensor.CopyFrom(numpy_helper.from_array(target, tensor.name))
    _resize_sizes_from_input(model)
    del model.graph.value_info[:]
    onnx.checker.check_model(model)
    _check_batch_dynamic(src, model, dst)
    onnx.save(model, dst)


def _resize_sizes_from_input(model) -> None:
    """Resize nodes with constant `sizes` starting with batch 1: sizes = [batch of the input] + the constant's
    other entries, computed in the graph (Shape, Slice, Concat), so the resize itself is unchanged."""
    from onnx import helper, numpy_helper

    consts = {t.name: t for t in model.graph.initializer}
    consts.update({n.output[0]: a.t for n in model.graph.node if n.op_type == "Constant"
                   for a in n.attribute if a.name == "value"})
    nodes = list(model.graph.node)
    for node in nodes:
        if node.op_type != "Resize" or len(node.input) < 4 or node.input[3] not in consts:
            continue
        sizes = numpy_helper.to_array(consts[node.input[3]]).astype(np.int64)
        if sizes.ndim != 1 or sizes.size < 2 or sizes[0] != 1:
            continue
        base = f"{node.name or node.output[0]}_dynamic_batch"
        model.graph.initializer.extend([
            numpy_helper.from_array(np.array([0], np.int64), f"{base}_start"),
            numpy_helper.from_array(np.array([1], np.int64), f"{base}_end"),
            numpy_helper.from_array(sizes[1:], f"{base}_rest")])
        new = [helper.make_node("Shape", [node.input[0]], [f"{base}_shape"]),
               helper.make_node("Slice", [f"{base}_shape", f"{base}_start", f"{base}_end"], [f"{base}_batch"]),
               helper.make_node("Concat", [f"{base}_batch", f"{base}_rest"], [f"{base}_sizes"], axis=0)]
        at = list(model.graph.node).index(node)
        for k, extra in enumerate(new):
            model.graph.node.insert(at + k, extra)
        orphan, node.input[3] = node.input[3], f"{base}_sizes"
        if not any(orphan in n.input for n in model.graph.node):
            kept = [t for t in model.graph.initializer if t.name != orphan]
            del model.graph.initializer[:]
            model.graph.initializer.extend(kept)
            for n in [n for n in model.graph.node if n.op_type == "Constant" and n.output[0] == orphan]:
                model.graph.node.remove(n)


def _check_batch_dynamic(src: str, model, dst: str) -> None:
    import onnxruntime as ort

    fixed = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    dynamic = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    inp = fixed.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal([2] + list(inp.shape[1:])).astype(np.float32)
    want = np.concatenate([fixed.run(None, {inp.name: x[i:i + 1]})[0] for i in range(2)])
    try:
        got = dynamic.run(None, {dynamic.get_inputs()[0].name: x})[0]
    except Exception as e:  # onnxruntime's Fail / InvalidArgument: the batch is baked in somewhere else
        got, why = None, str(e).splitlines()[0][:300]
    else:
        why = "outputs differ"
    if got is None or got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max()):
        from ..errors import UsageError

        raise UsageError(f"{src}: the batch size is baked into the graph beyond its inputs, reshapes and resizes "
                         f"({why}), so {dst} could not be given a symbolic batch; export with the batch you will run "
                         "instead (python -m mindghost.tools.export --batch_size N)")


def evaluate_onnx(path: str, cfg, setup, batch_size: int, progress: bool = False,
                  expected: Optional[int] = None, threads: int = 0) -> Dict[str, float]:
    """top-1/top-5/loss/img_per_s of an ONNX file on `cfg`'s val split, through validate.py's loader and counting
    (`build_eval_loader` with `setup.preprocessing()`, `evaluate`)."""
    from ..data import build_eval_loader
    from ..training.evaluate import evaluate

    loader = build_eval_loader(cfg, setup.preprocessing(), batch_size)
    return evaluate(_EvalNet(OnnxModel(path, threads)), loader, batch_size, desc="eval onnx", progress=progress,
                    expected=expected)


def measure_speed(paths: Mapping[str, str], sample_shape: Sequence[int], batches: Sequence[int] = (1, 32),
                  repeats: int = 20, warmup: int = 3, threads: int = 0) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Median latency (ms) and throughput (img/s) of each ONNX file per batch size, on random input of
    `sample_shape` (C, H, W). The files run interleaved (A B A B ...) so that load from other processes falls on
    all alike, and with onnxruntime's thread spinning off (else one file's spinning workers slow the next).
    A fixed-batch graph is measured at its own batch only. Returns {name: {str(batch): {"ms", "img_per_s",
    "repeats"}}}."""
    models = {name: OnnxModel(path, threads, spinning=False) for name, path in paths.items()}
    rng = np.random.default_rng(0)
    out: Dict[str, Dict[str, Dict[str, float]]] = {name: {} for name in models}
    for batch in batches:
        x = rng.standard_normal((batch,) + tuple(sample_shape)).astype(np.float32)
        runs = max(1, repeats if batch == 1 else max(3, repeats // 4))
        active = {n: m for n, m in models.items() if m.batch is None or m.batch == batch}
        times: Dict[str, list] = {n: [] for n in active}
        for model in active.values():
            for _ in range(warmup):
                model(x)
        for _ in range(runs):
            for name, model in active.items():
                t = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - t)
        for name, ts in times.items():
            ms = 1000.0 * float(np.median(ts))
            out[name][str(batch)] = {"ms": ms, "img_per_s": 1000.0 * batch / ms, "repeats": runs}
    return out


def validate_onnx(cfg, given: Mapping[str, Any], log) -> Dict[str, Any]:
    """validate.py for a `.onnx` `cfg.ckpt_path`: the export JSON's model, classes and preprocessing (overridden by
    `given`, the recipe and command line, as for a checkpoint), the val split through validate's pipeline; returns
    the result (validate.py writes it as for a checkpoint)."""
    import dataclasses

    from ..data import check_dataset
    from ..training.plan import raise_problems

    report = read_export_json(cfg.ckpt_path)
    keys = ("crop_pct", "interpolation", "mean", "std", "num_classes", "in_channels")
    explicit = {"image_size": given.get("eval_image_size") or given.get("image_size"),
                **{k: given.get(k) for k in keys}}
    setup = setup_from_export(report, model=given.get("model"), explicit=explicit, source=cfg.ckpt_path)
    for line in setup.messages():
        (log.warning if line.startswith("warning: ") else log.info)(line)
    cfg = dataclasses.replace(cfg, model=setup.model, num_classes=setup.num_classes, in_channels=setup.in_channels)
    data, problems = check_dataset(cfg, train=False, val=True)
    raise_problems(problems)
    batch = cfg.resolved_eval_batch_size()
    n = min(data.val_images, cfg.val_samples) if cfg.val_samples else data.val_images
    pre = setup.preprocessing()
    log.info(f"validating {cfg.model} ({cfg.ckpt_path}, onnxruntime CPU) on {n} images, batch {batch}; {pre}")
    res = evaluate_onnx(cfg.ckpt_path, cfg, setup, batch, progress=bool(cfg.progress), expected=n,
                        threads=cfg.cpu_threads)
    quant = report.get("quantization") or {}
    result = {"model": cfg.model, "checkpoint": os.path.abspath(cfg.ckpt_path), "format": "onnx",
              "int8": bool(quant), "quantization": quant.get("chosen"), "data_dir": cfg.data_dir,
              "split": cfg.val_split, "batch_size": batch, "device": "CPU (onnxruntime)",
              "image_size": pre.image_size, "crop_pct": pre.crop_pct, "interpolation": pre.interpolation, **res}
    log.info(f"top-1 {res['top1']:.2f}  top-5 {res['top5']:.2f}  loss {res['loss']:.4f}  "
             f"{res['img_per_s']:.1f} img/s  ({res['num_samples']} images, {res['seconds']:.0f} s)")
    return result


def sample_shape(report: Mapping[str, Any]) -> Tuple[int, ...]:
    """The (C, H, W) one sample has in an export report."""
    return tuple(int(d) for d in report["input_shape"][1:])
