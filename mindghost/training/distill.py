"""Knowledge distillation: the KD loss, the student+teacher loss cell, and building a frozen teacher.

Follows the GhostNetV3 training script (huawei-noah/Efficient-AI-Backbones, `ghostnetv3_pytorch/train.py`):
`loss = ori_loss_weight * label_loss(student) + kd_loss_weight * KD(student, teacher)`, the teacher in eval
mode without gradients, optionally fed a resized copy of the batch (`--teacher-resize`).

`WithDistillLoss` is a drop-in for `train_step.WithLoss`: `loss = net(images, labels)`, so the one compiled
`TrainStep` (loss scale, overflow skip, clipping, accumulation, EMA) runs the teacher in the same graph.

What a training loop must know (parameter names in the step cell):
- Student parameters keep their own names (as with `WithLoss`), so a student checkpoint loads into the bare model.
- Teacher parameters are named `teacher.<name>` and are frozen (requires_grad=False). They come from
  `teacher_ckpt` at every start and must never be written into the student's checkpoint or tracked by EMA:
  `is_distill_param(name)` is the rule, `student_parameters(net)` the student's share.
- `last_label_loss` and `last_kd_loss` hold the two unweighted loss parts of the latest micro-batch on this
  rank, for the logger. They are bookkeeping, not weights: a checkpoint writer skips them too. Their names have
  no dot, so if a file does contain them `mindghost.models.load_checkpoint` ignores them like `global_step`.
"""
import difflib
import math
import os
from typing import List

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.ops import functional as F

from .config import ConfigError

TEACHER_PREFIX = "teacher."
LOSS_PART_NAMES = ("last_label_loss", "last_kd_loss")
MINDCV_PREFIX = "mindcv:"


def is_distill_param(name: str) -> bool:
    """True for the parameters a distillation step cell adds to the student's: the teacher's (`teacher.*`)
    and the loss-part recorders. Checkpoint writers and EMA leave these out."""
    return name.startswith(TEACHER_PREFIX) or name in LOSS_PART_NAMES


def teacher_param_names(net: nn.Cell) -> List[str]:
    """Names of the teacher's parameters inside `net` (a WithDistillLoss, or a TrainStep around one)."""
    return [p.name for p in net.get_parameters() if p.name.startswith(TEACHER_PREFIX)]


def student_parameters(net: nn.Cell) -> List[Parameter]:
    """Every parameter of `net` except the distillation-only ones: the student's weights and BN statistics
    (for `WithLoss` this is simply all of them). What EMA should track and a checkpoint should hold."""
    return [p for p in net.get_parameters() if not is_distill_param(p.name)]


class KDLoss(nn.Cell):
    """Soft-target cross-entropy: `T² · mean_b( −Σ_c softmax(z_t/T)_c · log_softmax(z_s/T)_c )`.

    Inputs: student and teacher logits, both (batch, num_classes), any float dtype; computed in fp32 (AMP
    O2/O3 hand fp16 logits, whose softmax over many classes loses precision). Output: scalar fp32 loss.
    The teacher's logits are targets: no gradient flows into them.

    Why this form: the reference script's `kd_loss` computes exactly this with T=1 (batch mean of −p_t·log p_s)
    but, as published, has no `return` and never uses its `--temperature` flag; T=1 here reproduces what it
    intends. For T≠1 we scale by T² (Hinton et al., 2015) so the gradient's size does not shrink as 1/T² when
    the distributions are softened. This is the cross-entropy, not the KL divergence: the two differ by the
    teacher's entropy, a constant for the student, so the gradients are the same and only the logged value
    is offset (it does not go to 0 when the student matches the teacher).

    Raises ConfigError (a ValueError) for a temperature that is not a finite number > 0.
    """

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        temperature = float(temperature)
        if not (math.isfinite(temperature) and temperature > 0):
            raise ConfigError(f"KD temperature must be a finite number > 0, got {temperature} "
                             "(1.0 reproduces the GhostNetV3 reference; 2-4 softens the teacher's targets).")
        self.temperature = temperature
        self.inv_temperature = 1.0 / temperature
        self.t_squared = temperature * temperature

    def construct(self, student_logits, teacher_logits):
        z_s = F.cast(student_logits, ms.float32) * self.inv_temperature
        z_t = F.cast(F.stop_gradient(teacher_logits), ms.float32) * self.inv_temperature
        log_p_s = ops.log_softmax(z_s, axis=-1)
        p_t = ops.softmax(z_t, axis=-1)
        per_sample = -(p_t * log_p_s).sum(axis=-1)
        return per_sample.mean() * self.t_squared


class WithDistillLoss(nn.Cell):
    """`loss = net(images, labels)` = `label_weight · label_loss_fn(student(images), labels)
    + kd_weight · KDLoss(temperature)(student(images), teacher(images'))`, a drop-in for `WithLoss`.

    images: (batch, channels, H, W); labels: whatever `label_loss_fn` takes (class indices, or soft targets
    after mixup); student and teacher must output (batch, num_classes) with the same num_classes.
    images' is `images` resized (bilinear) to `teacher_image_size`² when that is > 0 and differs from H×W —
    the reference's `--teacher-resize`, for a teacher trained at another resolution. The teacher gets the
    student's normalisation (mean/std): pick a teacher trained with the same. Unlike torchvision's Resize in
    the reference, the resize has no antialiasing (identical when enlarging) and always gives a square.

    The teacher is frozen: its parameters get requires_grad=False (an optimizer built from
    `net.trainable_params()` holds only the student's) and are renamed `teacher.<name>` (the same
    architecture as student and teacher would otherwise give duplicate names); its output is under
    stop_gradient, so no backward pass runs through it; and it stays in eval mode — BN uses its moving
    statistics and never updates them, dropout is off — whatever `set_train` is called on this cell or on a
    cell around it. The teacher cell passed in is modified in place (names, requires_grad, mode).

    The unweighted loss parts of each step are written to the Parameters `last_label_loss` and `last_kd_loss`
    (fp32 scalars, not trainable) so the loop can log them after a step; see the module docstring for why a
    checkpoint writer skips them.

    Raises ConfigError (a ValueError) for negative or non-finite weights, both weights 0, a teacher that is the student,
    a negative teacher_image_size, or differing `num_classes` attributes of student and teacher.
    """

    def __init__(self, student: nn.Cell, teacher: nn.Cell, label_loss_fn: nn.Cell, label_weight: float = 1.0,
                 kd_weight: float = 1.0, temperature: float = 1.0, teacher_image_size: int = 0):
        super().__init__(auto_prefix=False)  # student parameters keep their names, as in WithLoss
        label_weight, kd_weight = float(label_weight), float(kd_weight)
        for key, value in (("label_weight", label_weight), ("kd_weight", kd_weight)):
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{key} must be a finite number >= 0, got {value}.")
        if label_weight == 0 and kd_weight == 0:
            raise ConfigError("label_weight and kd_weight are both 0: the loss would be constant. The reference "
                              "uses 1 and 1; set kd_weight 0 only by dropping the teacher altogether.")
        if student is teacher:
            raise ConfigError("the teacher is the student itself; build the teacher as a separate model "
                              "(build_teacher) from its own checkpoint.")
        if int(teacher_image_size) < 0:
            raise ConfigError(f"teacher_image_size must be 0 (same as the student's input) or a size in pixels, "
                              f"got {teacher_image_size}.")
        s_classes, t_classes = getattr(student, "num_classes", None), getattr(teacher, "num_classes", None)
        if isinstance(s_classes, int) and isinstance(t_classes, int) and s_classes != t_classes:
            raise ConfigError(f"the teacher predicts {t_classes} classes but the student {s_classes}: KD compares "
                              "their class distributions, so both need the same classes (a teacher trained on "
                              "the student's dataset).")
        self.student = student
        self.teacher = teacher
        teacher.update_parameters_name(TEACHER_PREFIX)
        for p in teacher.get_parameters():
            p.requires_grad = False
        self.label_loss_fn = label_loss_fn
        self.kd_loss_fn = KDLoss(temperature)
        self.label_weight = label_weight
        self.kd_weight = kd_weight
        self.teacher_image_size = int(teacher_image_size)
        self.last_label_loss = Parameter(Tensor(0.0, ms.float32), name=LOSS_PART_NAMES[0], requires_grad=False)
        self.last_kd_loss = Parameter(Tensor(0.0, ms.float32), name=LOSS_PART_NAMES[1], requires_grad=False)
        self.teacher.set_train(False)

    def add_flags_recursive(self, **flags):
        """Keep the teacher in eval mode. `set_train(mode)` on this cell, and on any cell around it (TrainStep,
        Model), reaches here through `add_flags_recursive(training=mode)` — a wrapper never calls its children's
        `set_train` — so this, not `set_train`, is the hook that sees every mode change."""
        super().add_flags_recursive(**flags)
        if "training" in flags:
            self.teacher.add_flags_recursive(training=False)
        return self

    def _teacher_input(self, images):
        if self.teacher_image_size > 0:
            size = self.teacher_image_size
            if F.shape(images)[-2] != size or F.shape(images)[-1] != size:
                return ops.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        return images

    def construct(self, images, labels):
        logits = F.cast(self.student(images), ms.float32)
        teacher_logits = F.stop_gradient(F.cast(self.teacher(self._teacher_input(images)), ms.float32))
        label_loss = self.label_loss_fn(logits, labels)
        kd_loss = self.kd_loss_fn(logits, teacher_logits)
        loss = self.label_weight * label_loss + self.kd_weight * kd_loss
        loss = F.depend(loss, F.assign(self.last_label_loss, F.stop_gradient(label_loss)))
        loss = F.depend(loss, F.assign(self.last_kd_loss, F.stop_gradient(kd_loss)))
        return loss


def build_teacher(name: str, ckpt_path: str, num_classes: int, in_channels: int = 3, ema: bool = False) -> nn.Cell:
    """A teacher model with its trained weights, in eval mode.

    name: a registered mindghost model (`ghostnet_100`, ...) or a MindCV model written `mindcv:<name>`
    (`mindcv:resnet50`). The prefix is explicit rather than a fallback for unknown names because both zoos
    register some of the same names (`ghostnet_100`) with different parameter names: a fallback would pick
    the wrong one for a checkpoint from the other zoo.
    ckpt_path: required; loaded strictly (every parameter present with its shape, nothing unexpected apart
    from optimizer/EMA state) through `mindghost.models.load_checkpoint`, which also reads MindCV checkpoints
    and PyTorch files for our models. `ema=True` takes the EMA weights of a mindghost training checkpoint.

    Raises ConfigError (a ValueError) for a missing `ckpt_path` or an unknown name (naming the close matches), and
    `mindghost.models.CheckpointError` for a file that does not exist or does not match the model.
    """
    from ..errors import UsageError
    from ..models import CheckpointError, create_model, is_model, load_checkpoint

    if not ckpt_path:
        raise ConfigError(f"teacher '{name}' has no checkpoint: a teacher with random weights is useless: pass "
                          "--teacher_ckpt (a .ckpt of the teacher trained on the student's classes).")
    if not os.path.isfile(ckpt_path):
        raise CheckpointError(f"teacher checkpoint not found: '{ckpt_path}'. Pass an existing file to --teacher_ckpt.")
    if name.startswith(MINDCV_PREFIX):
        import mindcv.models

        mindcv_name = name[len(MINDCV_PREFIX):]
        if not mindcv.models.is_model(mindcv_name):
            close = difflib.get_close_matches(mindcv_name, mindcv.models.list_models(), n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(MINDCV_PREFIX + c for c in close)}?" if close else ""
            raise ConfigError(f"unknown MindCV teacher '{mindcv_name}'.{hint} "
                              "`python -c 'import mindcv; print(mindcv.list_models())'` lists them.")
        teacher = mindcv.models.create_model(mindcv_name, num_classes=num_classes, in_channels=in_channels,
                                             pretrained=False)
    else:
        if not is_model(name):
            from_mindcv = ""
            try:
                import mindcv.models

                if mindcv.models.is_model(name):
                    from_mindcv = f" MindCV has a model of that name: write '{MINDCV_PREFIX}{name}'."
            except ImportError:
                pass
            if from_mindcv:
                raise ConfigError(f"'{name}' is not a mindghost model.{from_mindcv}")
        try:
            teacher = create_model(name, num_classes=num_classes, in_channels=in_channels)
        except UsageError as e:  # an unknown name: the message lists the close registered ones
            raise ConfigError(f"teacher: {e}") from None
    try:
        load_checkpoint(teacher, ckpt_path, ema=ema)
    except CheckpointError as e:  # say whose checkpoint it is: the run may load the student's too
        raise CheckpointError(f"teacher_ckpt ({name}): {e}") from None
    teacher.set_train(False)
    return teacher
