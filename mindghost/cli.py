"""One command-line vocabulary for every mindghost command (train.py, validate.py, the tools, convert, scripts).

A tool asks for the options it uses by name and gets the config schema's flag, type, choices and help
(`mindghost.training.config.Config`), or, for a concept only tools have (`--out`, `--format`, `--rtol`...), the one
definition in `TOOL_ARGS`:

    parser = argparse.ArgumentParser(prog="python -m mindghost.tools.export")
    add_args(parser, "model", "ckpt_path", "ema", "device")
    add_args(parser, "image_size", "batch_size", defaults={"image_size": None, "batch_size": 1})

Booleans are MindCV's `str2bool` with `nargs='?', const=True`: `--ema`, `--ema True/true/1/yes`,
`--ema False/false/0/no`; there is no second `--no_x` spelling. Old spellings (`--img_size`, `--batch`, `--out_dir`,
`--threads`, `--workers`, `--data_split`, `--force`, `--no_fuse_bn`, `--no_pipeline`) still work: each prints one
line on stderr, "warning: --img_size is deprecated; use --image_size", and sets the new option.
"""
import argparse
import dataclasses
import sys
import typing
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

TRUE_VALUES = ("true", "1", "yes")
FALSE_VALUES = ("false", "0", "no")


def str2bool(value: Any) -> bool:
    """MindCV's str2bool: True/true/1/yes -> True, False/false/0/no -> False; anything else is an argparse error
    naming the accepted values."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_VALUES:
        return True
    if text in FALSE_VALUES:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (True/true/1/yes or False/false/0/no), got {value!r}")


def _tristate(choices: Tuple[str, ...]) -> Callable[[str], str]:
    """A boolean with a third value (`--fuse_bn auto`): the booleans map to "true"/"false"."""
    def parse(value: str) -> str:
        text = str(value).strip().lower()
        if text in choices:
            return text
        if text in TRUE_VALUES + FALSE_VALUES + ("on", "off"):
            return "true" if text in TRUE_VALUES + ("on",) else "false"
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)} (or True/False), got {value!r}")
    parse.__name__ = "tristate"
    return parse


def _choice(choices: Tuple[str, ...]) -> Callable[[str], str]:
    """A string checked against `choices`, case-insensitively (`--device cpu` is CPU)."""
    lowered = {c.lower(): c for c in choices}

    def parse(value: str) -> str:
        found = lowered.get(str(value).lower())
        if found is None:
            raise argparse.ArgumentTypeError(f"invalid choice {value!r} (choose from {', '.join(choices)})")
        return found
    parse.__name__ = "choice"
    return parse


def _bool_spec(help: str, default: Any = False) -> Dict[str, Any]:
    return {"type": str2bool, "nargs": "?", "const": True, "default": default, "metavar": "BOOL", "help": help}


# Concepts only tools have: one definition each (flag name -> argparse keywords).
TOOL_ARGS: Dict[str, Dict[str, Any]] = {
    "out": {"default": "", "metavar": "FILE", "help": "the output file"},
    "format": {"nargs": "+", "default": ["mindir", "onnx"], "choices": ["mindir", "onnx", "air"],
               "help": "one or more export formats (AIR needs an Ascend device)"},
    "rtol": {"type": float, "default": 1e-5, "help": "parity tolerance: max |diff| / max |output|"},
    "top_k": {"type": int, "default": 5, "help": "how many of the top entries to show"},
    "random_weights": _bool_spec("use untrained weights on purpose (no checkpoint; for tests and timing only)"),
    "json": {"default": "", "metavar": "FILE", "help": "also write the numbers to this JSON file"},
    "pipeline": _bool_spec("also time the input pipeline (decode + train transforms)", True),
    "floor": _bool_spec("also measure matmul GFLOP/s and copy bandwidth and report the physical floor (MACs / FLOP "
                        "rate, bytes / bandwidth)"),
    "smoke": _bool_spec("a few steps of each run: checks the plumbing, not the result"),
    "mindir": {"default": "", "metavar": "FILE", "help": "an exported MINDIR file instead of --ckpt_path"},
    "class_names": {"default": "", "metavar": "FILE",
                    "help": "file with class names (one per line, or a JSON list), for checkpoints that record none"},
}

# Old spelling -> (canonical option, the value it sets or None to take the given value). Each prints one line.
DEPRECATED: Dict[str, Tuple[str, Optional[str]]] = {
    "img_size": ("image_size", None),
    "batch": ("batch_size", None),
    "out_dir": ("output_dir", None),
    "threads": ("cpu_threads", None),
    "workers": ("num_workers", None),
    "data_split": ("val_split", None),
    "force": ("overwrite", None),
    "no_fuse_bn": ("fuse_bn", "false"),
    "no_pipeline": ("pipeline", "false"),
}

# Pairs the vocabulary test refuses as two canonical flags of one command (old spelling, new spelling).
SYNONYMS: Tuple[Tuple[str, str], ...] = tuple((old, new) for old, (new, _) in DEPRECATED.items()) + (
    ("out-dir", "output_dir"), ("img-size", "image_size"), ("batch-size", "batch_size"))


class DeprecatedAlias(argparse.Action):
    """An old spelling: prints "warning: --old is deprecated; use --new[ value]" on stderr and sets --new."""

    def __init__(self, option_strings, dest, use: str = "", value: Any = None, **kwargs):
        self.use, self.value = use, value
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is deprecated; use {self.use}", file=sys.stderr, flush=True)
        setattr(namespace, self.dest, self.value if self.nargs == 0 else values)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser for commands with positional arguments: a bare boolean flag right before a positional
    (`predict --ema photo.jpg`) is read as true and keeps the positional, where argparse would take `photo.jpg`
    as the flag's value; `--ema True photo.jpg` and `--ema false photo.jpg` work as everywhere."""

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(self._bare_flags_kept_bare(args), namespace)

    def _bare_flags_kept_bare(self, args: List[str]) -> List[str]:
        optional = {opt: a for a in self._actions if a.nargs == "?" and a.const is not None
                    for opt in a.option_strings}
        out: List[str] = []
        for i, token in enumerate(args):
            out.append(token)
            if token == "--":
                return out + args[i + 1:]
            action = optional.get(token)
            following = args[i + 1] if i + 1 < len(args) else None
            if action is None or following is None or following.startswith("-"):
                continue
            try:
                action.type(following) if callable(action.type) else None
            except (argparse.ArgumentTypeError, ValueError, TypeError):
                out.append(str(action.const))  # not a value of this flag: a positional
        return out


def _schema_spec(name: str) -> Optional[Dict[str, Any]]:
    """argparse keywords for a config-schema field: its type, choices, help and default."""
    from .training.config import _HINTS, FIELDS

    if name not in FIELDS:
        return None
    f = FIELDS[name]
    tp = _HINTS[name]
    inner = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is typing.Union:
        tp = inner[0]
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    choices = f.metadata.get("choices")
    spec: Dict[str, Any] = {"help": f.metadata["help"], "default": default}
    if name == "fuse_bn":
        spec.update(type=_tristate(tuple(choices)), nargs="?", const="true", metavar="{" + ",".join(choices) + "}")
    elif tp is bool:
        spec.update(type=str2bool, nargs="?", const=True, metavar="BOOL")
    elif typing.get_origin(tp) in (list, List):
        (item,) = typing.get_args(tp)
        spec.update(type=item, nargs="+")
    elif choices:
        spec.update(type=_choice(tuple(choices)), choices=list(choices), metavar="{" + ",".join(choices) + "}")
    else:
        spec["type"] = tp
    return spec


def arg_spec(name: str) -> Dict[str, Any]:
    """The argparse keywords of option `name`: the schema's field, else the tool table; KeyError names both."""
    spec = _schema_spec(name)
    if spec is None:
        if name not in TOOL_ARGS:
            raise KeyError(f"'{name}' is neither a config field nor in mindghost.cli.TOOL_ARGS")
        spec = dict(TOOL_ARGS[name])
    return spec


def add_args(parser: argparse.ArgumentParser, *names: str, defaults: Optional[Mapping[str, Any]] = None,
             helps: Optional[Mapping[str, str]] = None, **overrides: Dict[str, Any]) -> argparse.ArgumentParser:
    """Add `--<name>` for each name (schema field or `TOOL_ARGS` entry) with its type, choices and help, and its
    deprecated spellings (`DEPRECATED`) as aliases. `defaults` / `helps`: per-name default and help of this
    command (a tool's batch default is not training's); `overrides`: other argparse keywords per name
    (`add_args(p, "num_workers", num_workers={"nargs": "+"})`). Returns `parser`."""
    for name in names:
        spec = arg_spec(name)
        if defaults and name in defaults:
            spec["default"] = defaults[name]
        if helps and name in helps:
            spec["help"] = helps[name]
        spec.update(overrides.get(name, {}))
        if spec.get("nargs") == "?" and "default" in spec and spec["default"] not in (None, argparse.SUPPRESS):
            spec["help"] = spec["help"] + f" (default: {spec['default']})"
        parser.add_argument("--" + name, dest=name, **spec)
        for old, (new, value) in DEPRECATED.items():
            if new != name:
                continue
            add_alias(parser, old, name, value, spec)
    return parser


def add_alias(parser: argparse.ArgumentParser, old: str, name: str, value: Optional[str] = None,
              spec: Optional[Mapping[str, Any]] = None) -> None:
    """Register `--old` as a deprecated spelling of `--name` (`value`: what a bare `--old` sets, e.g. `--no_x`)."""
    spec = dict(spec if spec is not None else arg_spec(name))
    use = f"--{name}" + (f" {value}" if value is not None else "")
    if value is not None:
        converted = spec["type"](value) if callable(spec.get("type")) else value
        parser.add_argument("--" + old, dest=name, action=DeprecatedAlias, use=use, value=converted, nargs=0,
                            default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return
    kept = {k: spec[k] for k in ("type", "nargs", "const", "choices", "metavar") if k in spec}
    parser.add_argument("--" + old, dest=name, action=DeprecatedAlias, use=use, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS, **kept)


def deprecated_aliases(parser: argparse.ArgumentParser) -> List[Tuple[str, str]]:
    """(old flag, what it tells the user to use) for every deprecated alias of `parser` (for tests)."""
    return [(a.option_strings[0], a.use) for a in parser._actions if isinstance(a, DeprecatedAlias)]


__all__ = ["DEPRECATED", "DeprecatedAlias", "Parser", "SYNONYMS", "TOOL_ARGS", "add_alias", "add_args", "arg_spec",
           "deprecated_aliases", "str2bool"]
