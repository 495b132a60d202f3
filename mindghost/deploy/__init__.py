"""Deployment outside MindSpore: exported ONNX files run and evaluated with onnxruntime (`onnx.py`), INT8
post-training quantization of them (`quantize.py`), and checkpoints written in timm's names (`timm.py`)."""
