"""Rules about the docs that are tests, not sentences.

- README's model table is the profiler's output: every registered model has a row, and each row's params are
  what the model has (regenerate with `python -m mindghost.tools.profile --update_readme README.md`).
- Every msrun command we print waits for its workers (`--join=True`).
- No document or test names a folder of one machine.
- Every relative link in README.md, CONTRIBUTING.md, docs/, configs/ and benchmarks/ names a file that exists and,
  with `#anchor`, a heading of that file (GitHub's anchor rule).
- README.md is a front door: at most 16 KB, and its first code block is exactly the two commands it opens with.
"""
import glob
import os
import re

import pytest

import mindghost
from mindghost.models import reparameterize_model
from mindghost.tools.profile import count_params, format_params, read_readme_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", "CONTRIBUTING.md"] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))) + sorted(
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


# The README's first code block, the project's two entry commands (the README opens with exactly these).
README_COMMANDS = [
    "bash scripts/demo.sh     # set up .venv, prepare Fashion-MNIST, train GhostNet-0.5x on the CPU "
    "(runs/demo/curves.png), validate",
    "bash scripts/setup.sh --dev && bash scripts/test.sh   # set up .venv with the test extras, run the tests "
    "(= .ci/run)",
]
README_MAX_BYTES = 16 * 1024
MARKDOWN = [p for p in DOCS if p.endswith(".md")]


def _outside_code(text):
    """The lines of a Markdown text that are not inside ``` fenced blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def _anchor(heading):
    """GitHub's anchor of a heading: lower case, inline code marks and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path):
    seen, anchors = {}, set()
    for line in _outside_code(_read(path)):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = _anchor(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            anchors.add(base if count == 0 else f"{base}-{count}")
    return anchors


def _links(path):
    """The target of every Markdown link outside code blocks and inline code."""
    return [target for line in _outside_code(_read(path))
            for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", line))]


@pytest.mark.parametrize("path", [os.path.relpath(p, ROOT) if os.path.isabs(p) else p for p in MARKDOWN])
def test_every_relative_link_resolves(path):
    broken = []
    for target in _links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...: not checked offline
            continue
        file_part, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        if not os.path.exists(os.path.join(ROOT, dest)):
            broken.append(f"{target} (no file {dest})")
        elif anchor and dest.endswith(".md") and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading with anchor #{anchor} in {dest})")
    assert not broken, f"{path}: broken links: {broken}"


def test_anchor_rule_matches_github():
    assert _anchor("Export (MINDIR, ONNX; AIR on Ascend)") == "export-mindir-onnx-air-on-ascend"
    assert _anchor("Fine-tuning: a new classifier") == "fine-tuning-a-new-classifier"
    assert _anchor("`features_only` backbones") == "features_only-backbones"


def test_readme_is_a_front_door():
    raw = open(os.path.join(ROOT, "README.md"), "rb").read()
    assert len(raw) <= README_MAX_BYTES, (f"README.md is {len(raw)} bytes, the limit is {README_MAX_BYTES}: move "
                                          "detail into docs/ and link it")
    text = raw.decode("utf-8")
    first_block = re.search(r"```[a-z]*\n(.*?)```", text, re.S)
    assert first_block, "README.md has no code block"
    assert first_block.group(1).strip().splitlines() == README_COMMANDS, (
        "README.md's first code block must be exactly the two commands (demo; setup --dev + tests)")
    before = text[:first_block.start()]
    assert before.startswith("# mindghost") and len(before.strip().splitlines()) >= 2, (
        "README.md opens with its title and one sentence saying what mindghost is, then the two commands")


def test_citation_lists_the_papers_the_readme_cites():
    """CITATION.cff (CFF 1.2.0) and the README's BibTeX name the same papers, and the licence is pyproject's."""
    import yaml

    with open(os.path.join(ROOT, "CITATION.cff"), encoding="utf-8") as f:
        cff = yaml.safe_load(f)
    assert cff["cff-version"] == "1.2.0" and cff["title"] and cff["authors"] and cff["message"]
    bibtex_titles = re.findall(r"^\s*title\s*=\s*\{(.+)\},?\s*$", _read("README.md"), re.M)
    assert len(bibtex_titles) >= 4, "README's Citing section lists the Ghost papers"
    assert sorted(r["title"] for r in cff["references"]) == sorted(bibtex_titles), (
        "CITATION.cff references and README BibTeX titles differ")
    for ref in cff["references"]:
        assert ref["authors"] and ref["year"], ref["title"]
    pyproject = _read("pyproject.toml")
    declared = re.search(r'^license\s*=\s*"([^"]+)"', pyproject, re.M).group(1)
    assert cff["license"] == declared == "Apache-2.0"
    license_text = _read("LICENSE")
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text


# Old option spellings: they still work as aliases (one deprecation line), but README, docs and configs print
# only the canonical names. (old spelling, regex, canonical spelling)
DEPRECATED_FLAGS = [("--img_size", r"--img_size\b", "--image_size"), ("--batch", r"--batch\b(?!_)", "--batch_size"),
                    ("--data_split", r"--data_split\b", "--val_split"), ("--threads", r"--threads\b", "--cpu_threads"),
                    ("--workers", r"--workers\b", "--num_workers"), ("--out_dir", r"--out_dir\b", "--output_dir"),
                    ("--force", r"--force\b", "--overwrite"), ("--no_<x>", r"--no_[a-z]\w*", "--<x> false")]


def _option_spelling_hits(rel, text):
    hits = []
    for number, line in enumerate(text.splitlines(), 1):
        if "deprecated" in line:  # a line that quotes the deprecation message itself
            continue
        hits += [f"{rel}:{number}: {old} (use {new})"
                 for old, pattern, new in DEPRECATED_FLAGS if re.search(pattern, line)]
    return hits


def test_documents_use_only_the_canonical_option_names():
    assert _option_spelling_hits("x.md", "run --img_size 32 --batch 4 --no_fuse_bn") and not _option_spelling_hits(
        "x.md", "run --image_size 32 --batch_size 4 --fuse_bn false")
    hits = []
    for path in DOCS:
        rel = os.path.relpath(path, ROOT) if os.path.isabs(path) else path
        if rel.endswith((".md", ".yaml")) and not rel.startswith("benchmarks"):  # benchmarks/: research diaries
            hits += _option_spelling_hits(rel, _read(rel))
    assert not hits, "old option spellings in the documents:\n" + "\n".join(hits)
