"""Resume with other optimizer settings (issue #18 item 7). Before: resuming at an epoch boundary with another
accum_steps failed with "the run's training state differs from the checkpoint's (missing ['accum.blocks...",
after the run directory was written. Now accumulation/optimizer/EMA slots a setting adds start fresh, those it
drops are dropped, both logged by name; a changed model is refused before anything is written."""
import os

import pytest
from _tiny_data import TINY_TRAIN_ARGS, load_entry_point, write_tiny_imagefolder

ARGS = TINY_TRAIN_ARGS + ["--mode", "pynative", "--val_every", "0", "--opt", "momentum"]


@pytest.mark.slow
def test_accum_steps_change_at_an_epoch_boundary_remaps_slots(tmp_path):
    from mindghost.weights import CheckpointError  # noqa: F401  (the class the old failure raised)

    train = load_entry_point("train")
    data = write_tiny_imagefolder(str(tmp_path / "data"))
    args = ARGS + ["--data_dir", data]
    first = train.main(args + ["--epochs", "1", "--output_dir", str(tmp_path / "a")])
    assert first["finished"]
    last_a = str(tmp_path / "a" / "checkpoints" / "last.ckpt")

    more = train.main(args + ["--epochs", "2", "--accum_steps", "2", "--ema", "True", "--resume", last_a,
                              "--output_dir", str(tmp_path / "b")])
    assert more["finished"] and more["global_step"] == 12
    log = (tmp_path / "b" / "train.log").read_text()
    assert "resuming with other optimizer settings (accum_steps 1 -> 2, ema False -> True)" in log
    assert "state the checkpoint does not hold starts fresh: " in log
    fresh = log.split("starts fresh: ")[1].splitlines()[0]
    assert "accum.* (" in fresh and "micro_step" in fresh and "ema.* (" in fresh and "ema_updates" in fresh

    back = train.main(args + ["--epochs", "3", "--resume", str(tmp_path / "b" / "checkpoints" / "last.ckpt"),
                              "--output_dir", str(tmp_path / "c")])
    assert back["finished"] and back["global_step"] == 18
    log = (tmp_path / "c" / "train.log").read_text()
    dropped = log.split("do not use is dropped: ")[1].splitlines()[0]
    assert "accum.* (" in dropped and "micro_step" in dropped and "ema.* (" in dropped


def test_another_model_is_refused_before_anything_is_written(tmp_path):
    import mindspore as ms

    from mindghost.training.config import ConfigError
    from mindghost.training.plan import check_resume
    from mindghost.weights import atomic_save

    ckpt = str(tmp_path / "last.ckpt")
    meta = {"epoch": 1, "batch_in_epoch": 0, "global_step": 6,
            "config": {"model": "ghostnet_050", "num_classes": 3, "in_channels": 3, "accum_steps": 1}}
    atomic_save([{"name": "w", "data": ms.Tensor([1.0])}], ckpt, meta)

    class Cfg:
        def to_dict(self):
            return {"model": "ghostnet_050", "num_classes": 4, "in_channels": 3, "accum_steps": 1}

    with pytest.raises(ConfigError, match=r"another model \(num_classes 3 -> 4\).*--num_classes 3.*--ckpt_path"):
        check_resume(Cfg(), ckpt, 1)
    assert os.listdir(tmp_path) == ["last.ckpt"]
