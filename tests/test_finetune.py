"""Fine-tuning with train.py (#13.2): a checkpoint with another class count loads all but its classifier under
--new_classifier, the backbone can be frozen for some epochs or the whole run, and the head can get its own lr.
PyNative runs (no graph compile); each run is 1-2 tiny epochs at 32 px."""
import os

import numpy as np
import pytest

from mindghost.models import CheckpointError

ARGS = ["--model", "ghostnet_050", "--num_classes", "3", "--image_size", "32", "--batch_size", "8", "--device", "CPU",
        "--mode", "pynative", "--progress", "False", "--plot", "False", "--lr", "0.05", "--warmup_epochs", "0",
        "--val_every", "0", "--opt", "momentum", "--weight_decay", "1e-4", "--drop_rate", "0"]


@pytest.fixture(scope="module")
def five_class_ckpt(tmp_path_factory):
    """Weights of the same architecture with a 5-class classifier (as a model pretrained elsewhere)."""
    import mindspore as ms

    from mindghost import create_model

    ms.set_seed(3)
    path = str(tmp_path_factory.mktemp("pre") / "five.ckpt")
    ms.save_checkpoint(create_model("ghostnet_050", num_classes=5), path)
    return path


def _weights(path):
    import mindspore as ms

    return {k: v.asnumpy() for k, v in ms.load_checkpoint(path).items() if hasattr(v, "asnumpy")}


def _split(state, model_keys):
    head = {k for k in model_keys if k.startswith("classifier.")}
    trunk = {k for k in model_keys if k not in head and not k.endswith(("moving_mean", "moving_variance"))}
    return head, trunk


def test_other_class_count_needs_the_opt_in(tiny, five_class_ckpt, train_mod, tmp_path):
    with pytest.raises(CheckpointError, match="new_classifier"):
        train_mod.main(ARGS + ["--data_dir", tiny, "--ckpt_path", five_class_ckpt, "--epochs", "1",
                               "--output_dir", str(tmp_path / "run")])


def test_frozen_backbone_for_the_whole_run_only_moves_the_classifier(tiny, five_class_ckpt, train_mod, tmp_path,
                                                                   capsys):
    out = str(tmp_path / "run")
    summary = train_mod.main(ARGS + ["--data_dir", tiny, "--ckpt_path", five_class_ckpt, "--new_classifier", "True",
                                     "--freeze_backbone", "-1", "--head_lr_scale", "10", "--epochs", "1",
                                     "--output_dir", out])
    log = capsys.readouterr().err
    assert summary["finished"]
    assert "classifier.weight" in log and "classifier.bias" in log  # the dropped keys are named
    before, after = _weights(five_class_ckpt), _weights(os.path.join(out, "checkpoints", "last.ckpt"))
    head, trunk = _split(after, [k for k in before if k in after or k.startswith("classifier.")])
    assert after["classifier.weight"].shape == (3, before["classifier.weight"].shape[1])
    assert all(np.array_equal(before[k], after[k]) for k in trunk), "a frozen weight moved"
    assert len(trunk) > 100


def test_backbone_frozen_for_the_first_epoch_then_trained(tiny, five_class_ckpt, train_mod, tmp_path):
    out = str(tmp_path / "run")
    train_mod.main(ARGS + ["--data_dir", tiny, "--ckpt_path", five_class_ckpt, "--new_classifier", "True",
                           "--freeze_backbone", "1", "--epochs", "2", "--output_dir", out])
    before = _weights(five_class_ckpt)
    epoch1 = _weights(os.path.join(out, "checkpoints", "epoch_0001.ckpt"))
    epoch2 = _weights(os.path.join(out, "checkpoints", "epoch_0002.ckpt"))
    _, trunk = _split(epoch1, [k for k in before if k in epoch1])
    assert all(np.array_equal(before[k], epoch1[k]) for k in trunk)
    assert not np.array_equal(epoch1["classifier.weight"], before["classifier.weight"][:3])
    moved = [k for k in trunk if not np.array_equal(epoch1[k], epoch2[k])]
    assert len(moved) > 0.9 * len(trunk), f"only {len(moved)} of {len(trunk)} backbone weights trained in epoch 2"


def test_finetune_options_are_checked_before_anything_is_written(tiny, train_mod, tmp_path):
    with pytest.raises(ValueError) as info:
        train_mod.main(ARGS + ["--data_dir", tiny, "--new_classifier", "True", "--head_lr_scale", "0",
                               "--output_dir", str(tmp_path / "run")])
    err = str(info.value)
    assert "new_classifier" in err and "head_lr_scale" in err
    assert not os.path.exists(tmp_path / "run")
