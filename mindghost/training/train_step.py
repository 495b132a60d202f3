"""One training step as one compiled cell: loss scaling, overflow skip, gradient reduction, clipping,
accumulation and EMA.

Our own cell rather than MindCV's `TrainStep` because that one clips before the cross-device gradient
reduction (each rank clips its own norm), clips every micro-batch instead of the accumulated gradient,
moves the EMA at every micro-step of an accumulation, and its overflow check calls Ascend status ops on CPU.
"""
import mindspore as ms
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops
from mindspore.ops import functional as F

from .distill import student_parameters

_scale_grad = ops.MultitypeFuncGraph("scale_grad")
_ema_update = ops.MultitypeFuncGraph("ema_update")
_add_to = ops.MultitypeFuncGraph("add_to")
_zero = ops.MultitypeFuncGraph("zero")
_finite = ops.MultitypeFuncGraph("finite")


@_scale_grad.register("Tensor", "Tensor")
def _scale_grad_fn(inv_scale, grad):
    return grad * F.cast(inv_scale, F.dtype(grad))


@_ema_update.register("Tensor", "Tensor", "Tensor")
def _ema_update_fn(decay, ema, weight):
    return F.assign(ema, ema * decay + F.cast(weight, F.dtype(ema)) * (1.0 - decay))


@_add_to.register("Tensor", "Tensor")
def _add_to_fn(acc, grad):
    return F.assign_add(acc, F.cast(grad, F.dtype(acc)))


@_zero.register("Tensor")
def _zero_fn(acc):
    return F.assign(acc, F.zeros_like(acc))


@_finite.register("Tensor")
def _finite_fn(grad):
    return ops.isfinite(grad).all()


class TrainStep(nn.TrainOneStepWithLossScaleCell):
    """`loss = step(images, labels)`: one micro-batch forward/backward; the optimizer runs every
    `accum_steps` micro-batches. `scale_sense` is a Tensor (fixed loss scale) or a
    DynamicLossScaleUpdateCell. Parameter names: the network's own, EMA copies `ema.<name>` (of the student's
    parameters only when the network is a distill.WithDistillLoss),
    accumulators `accum.<name>`, scalars `ema_updates`, `micro_step`, `scale_sense`, and `skipped_steps` (with
    overflow checking: micro-batches whose gradients overflowed and were dropped; the loop reads it to tell a
    run that trains from one whose every update is skipped)."""

    def __init__(self, network, optimizer, scale_sense, ema_decay: float = 0.0, clip_norm: float = 0.0,
                 accum_steps: int = 1, check_overflow: bool = False, device: str = "CPU"):
        super().__init__(network, optimizer, scale_sense)
        self.check_overflow = bool(check_overflow or self.loss_scaling_manager is not None)
        self.own_overflow_check = device not in ("Ascend", "GPU")  # the base class only knows NPU/GPU checks
        if self.check_overflow:
            self.skipped_steps = Parameter(Tensor(0, ms.int32), name="skipped_steps", requires_grad=False)
        self.use_clip = clip_norm > 0
        self.clip_norm = float(clip_norm)
        self.accum_steps = int(accum_steps)
        self.use_accum = accum_steps > 1
        if self.use_accum:
            self.accum = self.weights.clone(prefix="accum", init="zeros")
            self.micro_step = Parameter(Tensor(0, ms.int32), name="micro_step", requires_grad=False)
            self.inv_accum = Tensor(1.0 / accum_steps, ms.float32)
        self.use_ema = ema_decay > 0
        if self.use_ema:
            # the student's weights and BN statistics only: a KD teacher is frozen and reloaded at every start
            self.model_params = ParameterTuple(student_parameters(network))
            self.ema_params = self.model_params.clone(prefix="ema", init="same")
            self.ema_decay = float(ema_decay)
            self.ema_updates = Parameter(Tensor(0.0, ms.float32), name="ema_updates", requires_grad=False)

    def _update_ema(self):
        self.ema_updates += 1
        decay = self.ema_decay * (1 - F.exp(-self.ema_updates / 2000.0))  # warm-up: early EMA follows the weights
        return self.hyper_map(F.partial(_ema_update, decay), self.ema_params, self.model_params)

    def _apply(self, loss, grads):
        if self.use_clip:
            grads = ops.clip_by_global_norm(grads, clip_norm=self.clip_norm)
        loss = F.depend(loss, self.optimizer(grads))
        if self.use_ema:
            loss = F.depend(loss, self._update_ema())
        return loss

    def _overflow(self, status, grads):
        if self.own_overflow_check:
            finite = ops.stack(self.hyper_map(_finite, grads)).all()
            overflow = ops.logical_not(finite)
        else:
            overflow = self.get_overflow_status(status, grads)
        return self.process_loss_scale(overflow)

    def construct(self, *inputs):
        loss = self.network(*inputs)
        scale = self.scale_sense
        status = None
        if self.check_overflow:
            status, scale = self.start_overflow_check(loss, scale)
        sens = F.fill(F.dtype(loss), F.shape(loss), F.cast(scale, F.dtype(loss)))
        grads = self.grad(self.network, self.weights)(*inputs, sens)
        grads = self.hyper_map(F.partial(_scale_grad, F.cast(1.0 / scale, ms.float32)), grads)
        grads = self.grad_reducer(grads)  # mean over devices, before clipping: the norm is the global one
        overflow = False
        if self.check_overflow:
            overflow = self._overflow(status, grads)
        if not overflow:
            if self.use_accum:
                loss = F.depend(loss, self.hyper_map(_add_to, self.accum, grads))
                self.micro_step += 1
                if self.micro_step >= self.accum_steps:
                    mean = self.hyper_map(F.partial(_scale_grad, self.inv_accum), self.accum)
                    loss = self._apply(loss, mean)
                    loss = F.depend(loss, self.hyper_map(_zero, self.accum))
                    loss = F.depend(loss, F.assign(self.micro_step, 0))
            else:
                loss = self._apply(loss, grads)
        elif self.check_overflow:  # a constant: no counter exists (nor is compiled) without overflow checking
            self.skipped_steps += 1
        return loss


class WithLoss(nn.Cell):
    """network + loss, logits cast to fp32 first (AMP O2/O3 run the network in fp16)."""

    def __init__(self, network, loss_fn):
        super().__init__(auto_prefix=False)
        self.network = network
        self.loss_fn = loss_fn

    def construct(self, images, labels):
        logits = self.network(images)
        return self.loss_fn(F.cast(logits, ms.float32), labels)


class EvalNet(nn.Cell):
    """logits in fp32, for accuracy and loss on the host."""

    def __init__(self, network):
        super().__init__(auto_prefix=False)
        self.network = network

    def construct(self, images):
        return F.cast(self.network(images), ms.float32)
