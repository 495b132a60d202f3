"""Rules about the docs that are tests, not sentences.

- README's model table is the profiler's output: every registered model has a row, and each row's params are
  what the model has (regenerate with `python -m mindghost.tools.profile --update_readme README.md`).
- Every msrun command we print waits for its workers (`--join=True`).
- No document or test names a folder of one machine.
"""
import glob
import os
import re

import pytest

import mindghost
from mindghost.models import reparameterize_model
from mindghost.tools.profile import count_params, format_params, read_readme_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md"] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))) + sorted(
    glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True)) + sorted(
    glob.glob(os.path.join(ROOT, "configs", "**", "*.md"), recursive=True)) + sorted(
    glob.glob(os.path.join(ROOT, "scripts", "*"))) + sorted(glob.glob(os.path.join(ROOT, "benchmarks", "*.md")))


def _read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="module")
def readme_rows():
    return read_readme_table(_read("README.md"))


def test_readme_table_has_one_row_per_registered_model(readme_rows):
    names = [row["model"] for row in readme_rows]
    assert len(names) == len(set(names)), "a model has two rows"
    missing = sorted(set(mindghost.list_models()) - set(names))
    extra = sorted(set(names) - set(mindghost.list_models()))
    assert not missing and not extra, (f"README table: no row for {missing}, rows of unregistered models {extra}; "
                                       "run python -m mindghost.tools.profile --update_readme README.md")


@pytest.mark.slow
def test_readme_params_are_the_models(readme_rows):
    """Builds every registered model once (no forward): the params column must be the profiler's text."""
    wrong = {}
    for row in readme_rows:
        model = mindghost.create_model(row["model"])
        trainable = count_params(model)["trainable"]
        actual = format_params(trainable, count_params(reparameterize_model(model))["trainable"])
        if row["params"] != actual:
            wrong[row["model"]] = (row["params"], actual)
    assert not wrong, f"README params (table, model): {wrong}; rerun the profiler with --update_readme README.md"


def _msrun_commands(text):
    """Each msrun invocation with its backslash continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    return [line.strip() for line in joined.splitlines()
            if re.match(r"^\s*(#\s*)?(\$ )?msrun\s+--", line) or re.search(r"(^|[`\s])msrun\s+--\w", line)]


@pytest.mark.parametrize("path", [os.path.relpath(p, ROOT) if os.path.isabs(p) else p for p in DOCS])
def test_every_msrun_command_waits_for_its_workers(path):
    text = _read(path)
    if path.endswith(".sh"):  # the launchers pass their options on several lines to run_msrun/msrun
        commands = [text] if "run_msrun" in text and "--worker_num" in text else []
    else:
        commands = _msrun_commands(text)
    for command in commands:
        assert "--join=True" in command, f"{path}: msrun without --join=True: {command[:160]}"


@pytest.mark.parametrize("pattern", ["/work/", "/home/"])
def test_no_machine_specific_paths(pattern):
    hits = []
    for path in DOCS + sorted(glob.glob(os.path.join(ROOT, "tests", "*.py"))):
        rel = os.path.relpath(path, ROOT) if os.path.isabs(path) else path
        if rel == os.path.join("tests", "test_readme.py"):
            continue
        if pattern in _read(rel):
            hits.append(rel)
    assert not hits, f"{pattern} (one machine's folder) appears in {hits}; name an environment variable instead"
