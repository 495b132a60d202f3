"""Knowledge distillation (mindghost/training/distill.py): the KD loss against numpy, the frozen teacher inside
one compiled TrainStep, the recorded loss parts, the teacher input resize, names, and build_teacher's errors.

One GRAPH compile (the train-step test); everything else runs in PyNative on 32-48 px inputs and narrow models.
"""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn, ops

from mindghost.models import CheckpointError, create_model
from mindghost.training.distill import (
    LOSS_PART_NAMES,
    KDLoss,
    WithDistillLoss,
    build_teacher,
    is_distill_param,
    student_parameters,
    teacher_param_names,
)
from mindghost.training.train_step import TrainStep

NUM_CLASSES = 3


def _np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _np_kd(z_s, z_t, temperature):
    """T² · batch mean of −Σ_c softmax(z_t/T)_c · log_softmax(z_s/T)_c, in float64."""
    z_s, z_t = z_s.astype(np.float64) / temperature, z_t.astype(np.float64) / temperature
    p_t = np.exp(_np_log_softmax(z_t))
    return temperature ** 2 * np.mean(-(p_t * _np_log_softmax(z_s)).sum(axis=-1))


def _np_reference_kd(z_s, z_t):
    """The GhostNetV3 script's kd_loss as intended (it forgets its `return`): −bmm(p_t[:,None,:], log p_s[:,:,None])
    averaged over the batch, no temperature."""
    log_p_s = _np_log_softmax(z_s.astype(np.float64))[:, :, None]
    p_t = np.exp(_np_log_softmax(z_t.astype(np.float64)))[:, None, :]
    return float(np.mean(-np.matmul(p_t, log_p_s)))


def _logits(seed, shape=(5, 7), scale=3.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _tiny_ghostnet(drop_rate=0.0):
    return create_model("ghostnet_050", num_classes=NUM_CLASSES, width=0.25, drop_rate=drop_rate)


def _batch(seed, size=32, n=4):
    rng = np.random.default_rng(seed)
    images = Tensor(rng.standard_normal((n, 3, size, size)).astype(np.float32))
    labels = Tensor(rng.integers(0, NUM_CLASSES, n).astype(np.int32))
    return images, labels


def _values(params):
    return {p.name: p.asnumpy().copy() for p in params}


class ShapeRecordingTeacher(nn.Cell):
    """conv + BN + global mean → (batch, 3) logits; remembers the input shape it saw (PyNative only)."""

    def __init__(self):
        super().__init__()
        self.num_classes = NUM_CLASSES
        self.conv = nn.Conv2d(3, NUM_CLASSES, 3, has_bias=True)
        self.bn = nn.BatchNorm2d(NUM_CLASSES)
        self.seen_shape = None

    def construct(self, x):
        self.seen_shape = tuple(x.shape)
        return self.bn(self.conv(x)).mean(axis=(2, 3))


# ---- KDLoss ----

@pytest.mark.stack
@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.5])
def test_kd_loss_matches_numpy(temperature):
    z_s, z_t = _logits(0), _logits(1)
    got = KDLoss(temperature)(Tensor(z_s), Tensor(z_t))
    assert got.dtype == ms.float32 and got.shape == ()
    np.testing.assert_allclose(float(got), _np_kd(z_s, z_t, temperature), rtol=1e-5)


def test_kd_loss_at_temperature_one_is_the_reference_formula():
    z_s, z_t = _logits(2, (6, 10)), _logits(3, (6, 10))
    np.testing.assert_allclose(float(KDLoss(1.0)(Tensor(z_s), Tensor(z_t))), _np_reference_kd(z_s, z_t), rtol=1e-5)


def test_kd_loss_computes_fp16_logits_in_fp32():
    z_s, z_t = _logits(4, (4, 1000), 8.0).astype(np.float16), _logits(5, (4, 1000), 8.0).astype(np.float16)
    got = KDLoss(2.0)(Tensor(z_s), Tensor(z_t))
    assert got.dtype == ms.float32
    np.testing.assert_allclose(float(got), _np_kd(z_s, z_t, 2.0), rtol=1e-5)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")])
def test_kd_loss_rejects_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        KDLoss(temperature)


# ---- WithDistillLoss (PyNative) ----

@pytest.mark.parametrize("teacher_image_size,teacher_sees", [(0, 32), (32, 32), (48, 48)])
def test_loss_parts_are_recorded_and_teacher_input_is_resized(teacher_image_size, teacher_sees):
    student, teacher = _tiny_ghostnet(), ShapeRecordingTeacher()
    ce = nn.CrossEntropyLoss()
    net = WithDistillLoss(student, teacher, ce, label_weight=0.7, kd_weight=1.3, temperature=2.0,
                          teacher_image_size=teacher_image_size)
    net.set_train(True)
    images, labels = _batch(0)
    loss = float(net(images, labels))
    assert teacher.seen_shape == (4, 3, teacher_sees, teacher_sees)

    logits = student(images).asnumpy()  # train mode: batch statistics, as inside the loss cell
    teacher_in = images if teacher_sees == 32 else ops.interpolate(images, size=(48, 48), mode="bilinear",
                                                                    align_corners=False)
    teacher_logits = teacher(teacher_in).asnumpy()  # eval mode: moving statistics
    label_part = float(ce(Tensor(logits), labels))
    kd_part = _np_kd(logits, teacher_logits, 2.0)
    np.testing.assert_allclose(float(net.last_label_loss), label_part, rtol=1e-5)
    np.testing.assert_allclose(float(net.last_kd_loss), kd_part, rtol=1e-5)
    np.testing.assert_allclose(loss, 0.7 * label_part + 1.3 * kd_part, rtol=1e-5)


def test_teacher_names_are_prefixed_and_frozen():
    student, teacher = _tiny_ghostnet(), _tiny_ghostnet()  # same architecture: names would clash unprefixed
    student_names = [p.name for p in student.get_parameters()]
    student_trainable = [p.name for p in student.trainable_params()]
    teacher_own_names = [p.name for p in teacher.get_parameters()]
    net = WithDistillLoss(student, teacher, nn.CrossEntropyLoss())

    all_names = [p.name for p in net.get_parameters()]
    assert len(all_names) == len(set(all_names))
    assert teacher_param_names(net) == ["teacher." + n for n in teacher_own_names]
    assert [p.name for p in student.get_parameters()] == student_names  # unprefixed, as with WithLoss
    assert [p.name for p in net.trainable_params()] == student_trainable  # the teacher is not trainable
    assert [p.name for p in student_parameters(net)] == student_names
    assert set(all_names) - set(student_names) == set(teacher_param_names(net)) | set(LOSS_PART_NAMES)
    assert all(is_distill_param(n) for n in teacher_param_names(net) + list(LOSS_PART_NAMES))
    assert not any(is_distill_param(n) for n in student_names)


def test_teacher_stays_in_eval_mode_under_set_train():
    student, teacher = _tiny_ghostnet(), _tiny_ghostnet()
    net = WithDistillLoss(student, teacher, nn.CrossEntropyLoss())
    step = TrainStep(net, nn.Momentum(net.trainable_params(), 0.1, 0.9), Tensor(1.0, ms.float32))
    for cell, mode in ((net, True), (net, False), (step, True)):  # the train step reaches us via add_flags_recursive
        cell.set_train(mode)
        assert all(c.training == mode for _, c in student.cells_and_names())
        assert not any(c.training for _, c in teacher.cells_and_names())


def test_with_distill_loss_rejects_bad_arguments():
    student = _tiny_ghostnet()
    ce = nn.CrossEntropyLoss()
    with pytest.raises(ValueError, match="both 0"):
        WithDistillLoss(student, _tiny_ghostnet(), ce, label_weight=0.0, kd_weight=0.0)
    with pytest.raises(ValueError, match="kd_weight must be a finite number >= 0"):
        WithDistillLoss(student, _tiny_ghostnet(), ce, kd_weight=-1.0)
    with pytest.raises(ValueError, match="teacher is the student"):
        WithDistillLoss(student, student, ce)
    with pytest.raises(ValueError, match="teacher predicts 5 classes but the student 3"):
        WithDistillLoss(student, create_model("ghostnet_050", num_classes=5, width=0.25), ce)
    with pytest.raises(ValueError, match="teacher_image_size"):
        WithDistillLoss(student, _tiny_ghostnet(), ce, teacher_image_size=-1)


# ---- one compiled train step: the teacher never changes, the student does ----

@pytest.mark.slow
def test_graph_train_step_updates_only_the_student():
    ms.set_context(mode=ms.GRAPH_MODE)
    student, teacher = _tiny_ghostnet(), _tiny_ghostnet(drop_rate=0.2)
    net = WithDistillLoss(student, teacher, nn.CrossEntropyLoss(), label_weight=0.7, kd_weight=1.3,
                          temperature=2.0, teacher_image_size=48)
    # weight decay: a teacher weight that reached the optimizer would shrink even without a gradient
    optimizer = nn.Momentum(net.trainable_params(), learning_rate=0.1, momentum=0.9, weight_decay=1e-2)
    step = TrainStep(net, optimizer, Tensor(1.0, ms.float32))
    step.set_train(True)
    teacher_before = _values(teacher.get_parameters())
    student_before = _values(student.get_parameters())

    for seed in (1, 2):
        loss = float(step(*_batch(seed)))
        parts = float(net.last_label_loss), float(net.last_kd_loss)
        assert np.isfinite(loss) and parts[0] > 0 and parts[1] > 0
        np.testing.assert_allclose(loss, 0.7 * parts[0] + 1.3 * parts[1], rtol=1e-6)

    teacher_after = _values(teacher.get_parameters())
    assert any(k.endswith("moving_mean") for k in teacher_after)
    for name, value in teacher_before.items():  # weights and BN moving statistics, bit for bit
        assert np.array_equal(value, teacher_after[name]), name
    student_after = _values(student.get_parameters())
    trainable = {p.name for p in student.trainable_params()}
    changed = {k for k, v in student_before.items() if not np.array_equal(v, student_after[k])}
    assert trainable <= changed  # every student weight moved
    assert any(k.endswith("moving_mean") for k in changed)  # the student is in train mode
    assert not any(c.training for _, c in teacher.cells_and_names())


# ---- build_teacher ----

@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """ghostnet_050 checkpoints (3 classes): a mindghost one, a MindCV one, and the MindCV one without classifier."""
    import mindcv.models

    d = tmp_path_factory.mktemp("teachers")
    ours = create_model("ghostnet_050", num_classes=NUM_CLASSES)
    theirs = mindcv.models.create_model("ghostnet_050", num_classes=NUM_CLASSES)
    paths = {"mindghost": str(d / "ours.ckpt"), "mindcv": str(d / "mindcv.ckpt"),
             "mindcv_headless": str(d / "mindcv_headless.ckpt")}
    ms.save_checkpoint(ours, paths["mindghost"])
    ms.save_checkpoint(theirs, paths["mindcv"])
    headless = [{"name": p.name, "data": p} for p in theirs.get_parameters() if not p.name.startswith("classifier.")]
    ms.save_checkpoint(headless, paths["mindcv_headless"])
    return paths, _values(ours.get_parameters()), _values(theirs.get_parameters())


@pytest.mark.parametrize("name,key", [("ghostnet_050", "mindghost"), ("mindcv:ghostnet_050", "mindcv")])
def test_build_teacher_loads_weights_in_eval_mode(ckpts, name, key):
    paths, ours, theirs = ckpts
    teacher = build_teacher(name, paths[key], num_classes=NUM_CLASSES)
    expected = ours if key == "mindghost" else theirs
    got = _values(teacher.get_parameters())
    assert got.keys() == expected.keys()
    assert all(np.array_equal(got[k], expected[k]) for k in expected)
    assert not any(c.training for _, c in teacher.cells_and_names())


@pytest.mark.parametrize("path", [None, ""])
def test_build_teacher_requires_a_checkpoint(path):
    with pytest.raises(ValueError, match="random weights is useless: pass --teacher_ckpt"):
        build_teacher("ghostnet_050", path, num_classes=NUM_CLASSES)


def test_build_teacher_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found.*--teacher_ckpt"):
        build_teacher("ghostnet_050", str(tmp_path / "nope.ckpt"), num_classes=NUM_CLASSES)


@pytest.mark.parametrize("name,key,num_classes,match", [
    ("ghostnet_050", "mindghost", 5, "classifier differs"),  # other class count
    ("ghostnet_100", "mindghost", 3, "shape mismatch"),  # other width
    ("mindcv:ghostnet_050", "mindcv", 5, "classifier differs"),  # the MindCV path is as strict
    ("mindcv:ghostnet_050", "mindcv_headless", 3, "missing 2 key"),  # load_param_into_net would only return them
])
def test_build_teacher_rejects_mismatched_checkpoints(ckpts, name, key, num_classes, match):
    with pytest.raises(CheckpointError, match=match):
        build_teacher(name, ckpts[0][key], num_classes=num_classes)


@pytest.mark.parametrize("name,match", [
    ("resnet18", "not a mindghost model. MindCV has a model of that name: write 'mindcv:resnet18'"),
    ("mindcv:ghostnet_05", "Did you mean mindcv:ghostnet_050"),
    ("ghostnet_05", "Unknown model 'ghostnet_05'"),
])
def test_build_teacher_unknown_names(ckpts, name, match):
    with pytest.raises(ValueError, match=match):
        build_teacher(name, ckpts[0]["mindghost"], num_classes=NUM_CLASSES)
