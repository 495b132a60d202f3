"""GhostNetV3/V2 initialisation follows their references (issue #18 item 9): PyTorch's default init (timm's
ghostnet.py leaves init to PyTorch, "# FIXME init"; so does Efficient-AI-Backbones ghostnetv2_torch.py).
With v1's He-normal fan_out on every re-parameterisation branch the train-form eval-mode logits started near 1e9.

TIMM_LOGIT_STD was measured with torch 2.13.0+cpu, timm 1.0.31 (a separate venv): for seeds 0..4,
`torch.manual_seed(s); timm.create_model("ghostnetv3_050", num_classes=1000).eval()` on
`np.random.default_rng(s).standard_normal((4, 3, 64, 64))`, std of the logits: 0.01902, 0.01990, 0.01997,
0.02147, 0.02039 (mean 0.02015, range 0.0190-0.0215)."""
import math

import numpy as np
import pytest

TIMM_LOGIT_STD = 0.02015
TIMM_RANGE = (0.0190, 0.0215)


@pytest.mark.slow
def test_v3_train_form_logit_scale_at_init_matches_timm():
    import mindspore as ms

    from mindghost import create_model

    stds = []
    for seed in range(2):
        ms.set_seed(seed)
        model = create_model("ghostnetv3_050", num_classes=1000)
        model.set_train(False)
        x = np.random.default_rng(seed).standard_normal((4, 3, 64, 64)).astype(np.float32)
        stds.append(float(model(ms.Tensor(x)).asnumpy().std()))
    # seeds differ between frameworks: the spread of timm's five seeds, widened by a quarter each side
    low, high = TIMM_RANGE[0] * 0.75, TIMM_RANGE[1] * 1.25
    assert all(low < s < high for s in stds), f"logit std at init {stds}, timm {TIMM_LOGIT_STD} ({TIMM_RANGE})"


def _bound_ratio(param) -> float:
    """max |w| · √fan_in: ≤ 1 and close to 1 for PyTorch's default U(-1/√fan_in, 1/√fan_in)."""
    w = param.asnumpy()
    return float(np.abs(w).max() * math.sqrt(int(np.prod(w.shape[1:]))))


def test_v3_and_v2_use_pytorch_default_init_v1_keeps_mindcv_init():
    from mindghost import create_model

    v3 = create_model("ghostnetv3_050", num_classes=10)
    v2 = create_model("ghostnetv2_100", num_classes=10)
    v1 = create_model("ghostnet_050", num_classes=10)
    for model in (v3, v2):
        params = dict(model.parameters_and_names())
        for name in ("conv_stem.weight", "conv_head.weight", "classifier.weight"):
            assert 0.9 < _bound_ratio(params[name]) <= 1.0 + 1e-6, name
        bias = params["conv_head.bias"].asnumpy()
        assert np.abs(bias).max() > 0 and np.abs(bias).max() <= 1 / math.sqrt(params["conv_head.weight"].shape[1])
    params = dict(v1.parameters_and_names())
    assert _bound_ratio(params["conv_stem.weight"]) > 1.5  # He-normal fan_out: wider than the uniform bound
    assert not params["conv_head.bias"].asnumpy().any()  # zero biases (MindCV's init)
    v3.reset_classifier(5)  # fine-tuning re-initialises the classifier the reference's way too
    assert 0.9 < _bound_ratio(dict(v3.parameters_and_names())["classifier.weight"]) <= 1.0 + 1e-6
