"""scripts/transfer_experiment.py (#13.5): the --smoke run works end to end and writes results.json; the data
subsets it writes are the ones asked for; fine-tuning from a train.py checkpoint (which holds optimizer slots of
the old classifier) loads. The experiment's numbers are in docs/experiments.md, not checked here."""
import gzip
import importlib.util
import json
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script():
    spec = importlib.util.spec_from_file_location("transfer_experiment",
                                                  os.path.join(ROOT, "scripts", "transfer_experiment.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_idx(path, array):
    """An IDX file as Fashion-MNIST ships it: magic (0, 0, ubyte 0x08, ndim), big-endian dims, the bytes; gzipped."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def fake_src(tmp_path_factory):
    """Fashion-MNIST-shaped IDX files, 6 train / 3 test images per class; class c is a bright band at row 2c."""
    src = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    names = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 6),
             "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 3)}
    for img_file, lbl_file, per_class in names.values():
        labels = np.repeat(np.arange(10), per_class)
        rng.shuffle(labels)
        images = rng.integers(0, 60, (len(labels), 28, 28))
        for i, c in enumerate(labels):
            images[i, 2 * c: 2 * c + 3] = 250
        _write_idx(str(src / img_file), images)
        _write_idx(str(src / lbl_file), labels)
    return str(src)


@pytest.mark.slow
def test_smoke_runs_end_to_end_and_writes_the_results(fake_src, tmp_path):
    data, out = str(tmp_path / "data"), str(tmp_path / "runs")
    results = _script().main(["--smoke", "--src", fake_src, "--data_dir", data, "--out_dir", out])

    with open(os.path.join(out, "results.json")) as fh:
        written = json.load(fh)
    assert written == json.loads(json.dumps(results))
    assert [r["phase"].split(" ")[0] for r in written["phases"]] == ["pretrain", "fine-tune", "from"]
    for r in written["phases"]:
        assert r["train_images"] == 10 and r["val_images"] == 10 and r["steps"] == 1
        assert os.path.isfile(r["checkpoint"]) and 0 <= r["top1"] <= 100
    assert "--new_classifier" in written["phases"][1]["train_argv"]
    assert "--ckpt_path" not in written["phases"][2]["train_argv"]
    # the fine-tune started from the pretrained run's checkpoint, the scratch run from random weights
    assert written["phases"][0]["checkpoint"] in written["phases"][1]["train_argv"]
    # each ImageFolder holds exactly its five classes, 2 images each (the smoke sizes)
    for tree, first in (("source", "0_tshirt_top"), ("target", "5_sandal")):
        classes = sorted(os.listdir(os.path.join(data, tree, "train")))
        assert len(classes) == 5 and classes[0] == first
        assert all(len(os.listdir(os.path.join(data, tree, "train", c))) == 2 for c in classes)


def test_data_subsets_are_reused_only_for_the_same_selection(fake_src, tmp_path):
    mod = _script()
    argv = ["--src", fake_src, "--data_dir", str(tmp_path / "data"), "--val_per_class", "2",
            "--pretrain_per_class", "3"]
    counts = mod.prepare_data(mod.parse_args(argv + ["--shots", "4"]))
    assert counts == {"source": {"train": 15, "val": 10}, "target": {"train": 20, "val": 10}}
    target = tmp_path / "data" / "target" / "train"
    assert sorted(len(os.listdir(target / c)) for c in os.listdir(target)) == [4] * 5
    assert mod.prepare_data(mod.parse_args(argv + ["--shots", "4"])) == counts  # reused as it is
    with pytest.raises(ValueError, match="another selection"):
        mod.prepare_data(mod.parse_args(argv + ["--shots", "5"]))
    with pytest.raises(ValueError, match="fewer than the 7"):
        mod.prepare_data(mod.parse_args(argv + ["--shots", "7", "--data_dir", str(tmp_path / "other")]))


def test_new_classifier_drops_the_old_classifiers_optimizer_slots():
    """A train.py checkpoint holds AdamW slots (`adam_m.<param>`, `adam_v.<param>`) of its classifier too; with
    new_classifier they go with the classifier instead of failing as unexpected keys."""
    from mindghost import create_model
    from mindghost.weights.load import load_state_dict

    model = create_model("ghostnet_050", num_classes=5)
    state = {k: p.asnumpy() for k, p in model.parameters_dict().items()}
    for k in ("classifier.weight", "classifier.bias"):  # the pretrained run had 3 classes
        old = np.zeros((3,) + state[k].shape[1:], np.float32)
        state[k] = state["adam_m." + k] = state["adam_v." + k] = old
    state["adam_m.conv_stem.weight"] = state["conv_stem.weight"]  # a backbone slot stays an accepted training state
    load_state_dict(model, state, new_classifier=True)
    assert model.classifier.weight.shape == (5, state["classifier.weight"].shape[1])
