"""#17.1: every command speaks one vocabulary (the table in `mindghost.cli`).

Walks the parser of every command (train.py, validate.py, each `python -m mindghost.tools.X`, convert, scripts/*.py,
benchmarks/compare.py and worker.py) and fails when a concept has an old spelling as a canonical flag (two spellings
across commands), a boolean refuses its bare or its explicit form, a `--device` has other choices, or an old
spelling no longer works or does not print its one deprecation line. Parsing only: nothing is built.
"""
import argparse
import importlib.util
import os

import pytest
from _tiny_data import load_entry_point

from mindghost import cli
from mindghost.training import config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICES = {"auto", "CPU", "GPU", "Ascend"}
# old spelling -> its canonical name (VOCAB.md column 3), plus the hyphenated one make_parity_fixtures.py had
OLD_SPELLINGS = {old: new for old, new in cli.SYNONYMS}
OLD_SPELLINGS.update({"temperature": "kd_temperature", "pretrain_batch": "pretrain_batch_size"})


def _script(relpath: str):
    path = os.path.join(ROOT, relpath)
    spec = importlib.util.spec_from_file_location("vocab_" + os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parsers():
    from mindghost.convert import convert
    from mindghost.tools import (
        benchmark,
        export,
        plots,
        predict,
        profile,
        quantize,
        redundancy,
        reproduce,
        verify_images,
    )

    validate = load_entry_point("validate")
    return {
        "train.py": config.make_parser(),
        "validate.py": config.make_parser(fields=validate.VALIDATE_FIELDS),
        "tools.export": export.build_parser(),
        "tools.benchmark": benchmark.build_parser(),
        "tools.predict": predict.build_parser(),
        "tools.profile": profile.build_parser(),
        "tools.redundancy": redundancy.build_parser(),
        "tools.plots": plots.build_parser(),
        "tools.reproduce": reproduce._own_parser(),
        "tools.quantize": quantize.build_parser(),
        "tools.verify_images": verify_images.build_parser(),
        "convert": convert.build_parser(),
        "scripts/ablation_experiment.py": _script("scripts/ablation_experiment.py").build_parser(),
        "scripts/timm_parity.py": _script("scripts/timm_parity.py").build_parser(),
        "scripts/distill_experiment.py": _script("scripts/distill_experiment.py").build_parser(),
        "scripts/transfer_experiment.py": _script("scripts/transfer_experiment.py").build_parser(),
        "scripts/prepare_fashion_mnist.py": _script("scripts/prepare_fashion_mnist.py").build_parser(),
        "scripts/make_parity_fixtures.py": _script("scripts/make_parity_fixtures.py").build_parser(),
        "benchmarks/compare.py": _script("benchmarks/compare.py").build_parser(),
        "benchmarks/worker.py": _script("benchmarks/worker.py").build_parser(),
    }


PARSERS = _parsers()


def _is_alias(action: argparse.Action) -> bool:
    """An old spelling kept for compatibility: mindghost.cli's, or the scripts' without mindghost."""
    return isinstance(action, cli.DeprecatedAlias) or type(action).__name__ == "_Deprecated"


def _canonical(parser):
    return {opt.lstrip("-"): a for a in parser._actions if not _is_alias(a) for opt in a.option_strings
            if opt.startswith("--") and opt != "--help"}


def _required_argv(parser) -> list:
    """Dummy values for the arguments a parser requires (positionals and required options)."""
    argv = []
    for a in parser._actions:
        if not (a.required or not a.option_strings) or isinstance(a, argparse._HelpAction):
            continue
        if not a.option_strings and a.nargs in ("*", "?"):
            continue
        value = str(list(a.choices)[0]) if a.choices else ("1" if a.type in (int, float) else "x")
        argv += ([a.option_strings[0]] if a.option_strings else []) + [value]
    return argv


def _booleans(parser):
    for name, a in _canonical(parser).items():
        kind = getattr(a.type, "__name__", "")
        if isinstance(a, (argparse._StoreTrueAction, argparse._StoreFalseAction)) or kind in ("str2bool",
                                                                                             "tristate"):
            yield name, a
        elif name in config.BARE_TRUE and parser.prog and a.nargs == "?":  # the schema parser's booleans
            yield name, a


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_one_spelling_per_concept(command):
    flags = _canonical(PARSERS[command])
    old = sorted(f"--{f} (use --{OLD_SPELLINGS[f]})" for f in flags if f in OLD_SPELLINGS)
    negated = sorted(f"--{f}" for f in flags if f.startswith("no_"))
    assert not old, f"{command}: old spellings as canonical flags: {old}"
    assert not negated, f"{command}: a second --no_x spelling of a boolean: {negated} (use --x false)"


def test_no_concept_has_two_canonical_spellings_across_commands():
    used = {}
    for command, parser in PARSERS.items():
        for flag in _canonical(parser):
            used.setdefault(flag, command)
    clashes = [f"--{old} ({used[old]}) and --{new} ({used[new]})" for old, new in OLD_SPELLINGS.items()
               if old in used and new in used]
    assert not clashes, clashes


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_boolean_takes_the_bare_and_the_explicit_form(command):
    parser = PARSERS[command]
    base = _required_argv(parser)
    booleans = dict(_booleans(parser))
    for name, action in booleans.items():
        flag = "--" + name
        assert not isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)), \
            f"{command}: {flag} is a bare switch; `{flag} True` / `{flag} false` are refused"
        for forms, expected in (([flag], "true"), ([flag, "True"], "true"), ([flag, "true"], "true"),
                                ([flag, "1"], "true"), ([flag, "yes"], "true"), ([flag, "false"], "false"),
                                ([flag, "False"], "false"), ([flag, "0"], "false"), ([flag, "no"], "false")):
            value = getattr(parser.parse_args(forms + base), action.dest)
            if isinstance(value, str) and value.lower() not in ("true", "false"):  # the schema parser's raw text
                value = cli.str2bool(value)
            assert str(value).lower() == expected, f"{command}: {' '.join(forms)} gave {value!r}"


def test_the_schema_booleans_reach_the_config():
    """train.py's bare `--ema` used to fail with "expected one argument"."""
    assert config.parse_args(["--ema"])[0].ema is True
    assert config.parse_args(["--ema", "false"])[0].ema is False
    assert config.parse_args(["--ema", "True", "--pretrained", "--pretrained", "no"])[0].pretrained is False
    assert config.parse_args(["--fuse_bn"])[0].fuse_bn == "true"
    assert config.parse_args(["--fuse_bn", "off"])[0].fuse_bn == "false"
    with pytest.raises(SystemExit):
        config.parse_args(["--ema", "maybe"])


def test_a_bad_boolean_names_the_accepted_values(capsys):
    with pytest.raises(SystemExit):
        PARSERS["tools.export"].parse_args(["--ema", "maybe"])
    assert "True/true/1/yes or False/false/0/no" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_device_has_the_same_checked_choices(command):
    action = _canonical(PARSERS[command]).get("device")
    if action is None:
        return
    if action.choices is None:  # the schema parser checks choices in `normalize`
        assert command in ("train.py", "validate.py")
        assert set(config.FIELDS["device"].metadata["choices"]) == DEVICES
        return
    assert set(action.choices) == DEVICES, f"{command}: --device choices {action.choices}"


# every old spelling each command had before #17, and what it must set
KEPT = {
    "tools.export": [("--img_size", "32", "image_size", 32), ("--batch", "2", "batch_size", 2),
                     ("--out_dir", "d", "output_dir", "d"), ("--no_fuse_bn", None, "fuse_bn", "false")],
    "tools.benchmark": [("--img_size", "32", "image_size", 32), ("--batch", "2", "batch_size", 2),
                        ("--threads", "2", "cpu_threads", 2), ("--workers", "1", "num_workers", [1]),
                        ("--data_split", "s", "train_split", "s"), ("--no_pipeline", None, "pipeline", False)],
    "tools.predict": [("--batch", "2", "batch_size", 2)],
    "tools.profile": [("--img_size", "32", "image_size", 32)],
    "tools.redundancy": [("--img_size", "32", "image_size", 32)],
    "convert": [("--force", None, "overwrite", True)],
    "scripts/transfer_experiment.py": [("--out_dir", "d", "output_dir", "d"), ("--batch", "5", "batch_size", 5),
                                       ("--pretrain_batch", "5", "pretrain_batch_size", 5),
                                       ("--warmup", "1", "warmup_epochs", 1.0)],
    "scripts/distill_experiment.py": [("--out", "d", "output_dir", "d"),
                                      ("--temperature", "2", "kd_temperature", 2.0)],
    "scripts/prepare_fashion_mnist.py": [("--out", "d", "output_dir", "d")],
    "scripts/make_parity_fixtures.py": [("--out-dir", "d", "output_dir", "d")],
    "benchmarks/compare.py": [("--img_size", "32", "image_size", 32), ("--threads", "2", "cpu_threads", 2)],
}


@pytest.mark.parametrize("command", sorted(KEPT))
def test_old_spellings_still_work_with_one_deprecation_line(command, capsys):
    parser = PARSERS[command]
    for old, value, dest, expected in KEPT[command]:
        capsys.readouterr()
        ns = parser.parse_args([old] + ([value] if value is not None else []) + _required_argv(parser))
        assert getattr(ns, dest) == expected, f"{command}: {old} set {dest}={getattr(ns, dest)!r}"
        lines = [line for line in capsys.readouterr().err.splitlines() if line]
        new = f"--{dest}" + (f" {str(expected).lower()}" if value is None and old.startswith("--no_") else "")
        assert lines == [f"warning: {old} is deprecated; use {new}"], f"{command}: {old}: {lines}"


def test_every_registered_alias_prints_its_line(capsys):
    for command, parser in PARSERS.items():
        for a in parser._actions:
            if not _is_alias(a):
                continue
            old = a.option_strings[0]
            value = [] if a.nargs == 0 or a.nargs == "?" else ["1"]
            capsys.readouterr()
            parser.parse_args([old] + value + _required_argv(parser))
            lines = [line for line in capsys.readouterr().err.splitlines() if line]
            assert len(lines) == 1 and lines[0].startswith(f"warning: {old} is deprecated; use --"), (command, lines)


def test_predict_reads_a_boolean_value_as_a_value_and_an_image_as_an_image():
    """`predict --ema True x.jpg` used to take "True" as an image path."""
    parser = PARSERS["tools.predict"]
    ns = parser.parse_args(["--ema", "True", "photo.jpg"])
    assert ns.ema is True and ns.inputs == ["photo.jpg"]
    ns = parser.parse_args(["--ema", "photo.jpg", "b.png"])
    assert ns.ema is True and ns.inputs == ["photo.jpg", "b.png"]
    ns = parser.parse_args(["--ema", "false", "--fuse_bn", "photo.jpg", "c.png"])
    assert ns.ema is False and ns.fuse_bn == "true" and ns.inputs == ["photo.jpg", "c.png"]


def test_validate_offers_only_what_validation_uses(tmp_path):
    validate = load_entry_point("validate")
    listed = PARSERS["validate.py"].format_help()
    for used in ("model", "ckpt_path", "pretrained", "data_dir", "image_size", "batch_size", "device", "mode",
                 "cpu_threads", "num_workers", "output_dir", "ema", "fuse_bn", "val_split", "val_samples"):
        assert f"--{used} " in listed, used
    for training in ("lr", "epochs", "opt", "warmup_epochs", "mixup", "teacher", "resume", "train_split"):
        assert f"--{training} " not in listed, training
    # a training flag (scripts pass train.py's common flags) is ignored like a recipe's training key
    cfg, _, cli_keys = validate.parse_args(["--ckpt_path", "x.ckpt", "--plot", "False"])
    assert cfg.ckpt_path == "x.ckpt" and cli_keys == ["ckpt_path", "plot"]
    with pytest.raises(SystemExit):
        validate.parse_args(["--ckpt_path", "x.ckpt", "--learning_rate_typo", "0.1"])
    # a training recipe's keys are ignored, an unknown key is still an error
    recipe = os.path.join(ROOT, "configs", "demo", "ghostnet_050_fashion_mnist_cpu.yaml")
    cfg, _, _ = validate.parse_args(["-c", recipe, "--ckpt_path", "x.ckpt"])
    assert cfg.ckpt_path == "x.ckpt"
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: ghostnet_050\nlearning_rate_typo: 0.1\n")
    with pytest.raises(SystemExit):
        validate.parse_args(["-c", str(bad), "--ckpt_path", "x.ckpt"])


def test_validate_names_the_training_flags_it_does_not_use(capfd):
    """A training option given to validate.py on the command line is not silently dropped: one log line names it."""
    validate = load_entry_point("validate")
    cfg, _, cli_keys = validate.parse_args(["--ckpt_path", "x.ckpt", "--plot", "False", "--lr", "0.1",
                                            "--device", "CPU"])
    validate.setup_runtime(cfg, ignored=[k for k in cli_keys if k not in validate.VALIDATE_FIELDS])
    out, err = capfd.readouterr()
    assert "not used by validation (training options): --lr, --plot" in out + err
