"""The documentation: the MkDocs site builds strictly and documents every public symbol, its pages and links resolve,
its benchmark tables come from the results files, and the README stays a short front door."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)\s]+)\)")
TABLE_MARKERS = ("<!-- zoo-table:start -->", "<!-- zoo-table:end -->")


def _hooks():
    spec = importlib.util.spec_from_file_location("kanvision_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nav_pages(nav) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return {slugify(re.sub(r"[`*]", "", h), "-") for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def _check_links(page: Path) -> list[str]:
    """Relative links of a markdown page that name no existing file or heading."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(target)
    return broken


def test_nav_lists_every_page_and_every_link_resolves():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = _nav_pages(config["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages  # no page missing from the nav, no nav entry without a page
    broken = {str(page.relative_to(ROOT)): _check_links(page) for page in [README, *DOCS.rglob("*.md")]}
    assert {page: links for page, links in broken.items() if links} == {}


def test_the_link_check_finds_broken_links(tmp_path):
    (tmp_path / "b.md").write_text("# Some Title\n")
    page = tmp_path / "a.md"
    page.write_text("[ok](b.md#some-title) [file](missing.md) [anchor](b.md#nope) [web](https://example.org/x.md)\n")
    assert _check_links(page) == ["missing.md", "b.md#nope"]


def test_every_test_the_design_page_cites_exists():
    """The list of a KAN layer's paths names the tests that cover them: each must be a test function in tests/."""
    cited = []
    for line in (DOCS / "design.md").read_text().splitlines():
        current = None
        for file, name in re.findall(r"`(?:(test_\w+\.py))?::(test_\w+)`", line):
            current = file or current
            assert current, f"'::{name}' without a file before it: {line}"
            cited.append((current, name))
    assert len(cited) > 40
    missing = []
    for file, name in cited:
        (path,) = list((ROOT / "tests").rglob(file)) or [None]
        if path is None or not re.search(rf"^def {name}\(", path.read_text(), re.MULTILINE):
            missing.append(f"{file}::{name}")
    assert missing == []


def _results(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    results.mkdir()
    header = (
        "model,baseline,params,baseline_params,gflops,baseline_gflops,input_size,batch_size,infer_img_s,"
        "infer_x_baseline,infer_spread,train_img_s,train_x_baseline,train_spread,peak_mem_mib,mem_x_baseline\n"
    )
    old = "kat_tiny_patch16_224,vit_tiny_patch16_224,1,1,1,1,3x224x224,2,1,1,0,1,1,0,1,1\n"
    (results / "zoo-cpu-2020-01-01.csv").write_text(header + old)
    rows = (
        "kat_tiny_patch16_224,vit_tiny_patch16_224,5718328,5717416,2.555,2.5074,3x224x224,4,39.04,0.8512,0.03,"
        "10.21,0.864,0.02,141.6,1.0031\n"
        "kan_cnn_tiny,,116794,,0.0016,,1x8x8,4,870.14,,0.04,287.14,,0.03,21.0,\n"
    )
    (results / "zoo-cpu-2021-06-30.csv").write_text(header + rows)
    (results / "zoo-cpu-2022-01-01-compiled.csv").write_text(header + old)  # not the eager series
    return results


def test_zoo_table_comes_from_the_newest_eager_csv(tmp_path):
    hooks = _hooks()
    results = _results(tmp_path)
    table = hooks.render("zoo", [], results)
    assert table.startswith("`zoo-cpu-2021-06-30.csv`") and ", batch 4," in table
    kat = "| `kat_tiny_patch16_224` | 5.72 | 2.56 | 3x224x224 | vit_tiny_patch16_224 | 39.0 | 0.85x | 10.2 | 0.86x |"
    assert f"{kat} 142 | 1.00x |" in table
    assert "| `kan_cnn_tiny` | 0.12 | 0.00 | 1x8x8 | – | 870.1 | – | 287.1 | – | 21 | – |" in table
    only = hooks.render("zoo", ["kan_"], results)
    assert "`kan_cnn_tiny`" in only and "kat_tiny" not in only
    page = "# t\n\n<!-- results:zoo kat_ -->\n\nrest\n"
    assert hooks.render_markdown(page, results) == f"# t\n\n{hooks.render('zoo', ['kat_'], results)}\n\nrest\n"


def test_missing_or_broken_results_say_not_measured(tmp_path):
    hooks = _hooks()
    empty = tmp_path / "nothing"
    for kind in hooks.KINDS:
        assert hooks.render(kind, [], empty).startswith("*Not measured")
    results = _results(tmp_path)
    (results / "layers-cpu-2021-01-01.json").write_text("{not json")
    assert "Not measured" in hooks.render("layers", [], results)
    assert "Not measured" in hooks.render("zoo", ["nope_"], results)
    with pytest.raises(ValueError, match="unknown results table 'speed'; valid: zoo, layers"):
        hooks.render("speed", [], results)
    with pytest.raises(ValueError, match="takes no arguments"):
        hooks.render("layers", ["kat_"], results)


def test_layer_and_activation_tables_from_the_committed_results():
    hooks = _hooks()
    results = ROOT / "benchmarks" / "results"
    layers = hooks.render("layers", [], results)
    activations = hooks.render("activations", [], results)
    for table, name in ((layers, "layers"), (activations, "activations")):
        if "Not measured" in table:
            pytest.skip(f"no {name} results committed")
        assert f"`{hooks.newest(results, name, 'json').name}`" in table
    assert "| KANConv2d[chebyshev] |" in layers and "| GroupRational |" in activations


def test_readme_is_a_short_front_door():
    text = README.read_text()
    assert len(text) <= 12_000, f"README.md has {len(text)} characters; details belong in docs/"
    for needed in ("make train", "make test", "make test-all", "kanvision[train]", "## Docker", *TABLE_MARKERS):
        assert needed in text, needed
    code = "\n".join(re.findall(r"```\w*\n(.*?)```", text, re.DOTALL))
    for example in ("KANConv2d(", "pretrained=True", "kanvision-train experiment=", "kanvision-compare ",
                    "kanvision-inspect "):  # fmt: skip
        assert example in code, example
    assert "slow" in text  # says what each test tier covers


def test_readme_layer_example_runs(monkeypatch):
    monkeypatch.setenv("KANVISION_CPU_KERNELS", "0")  # plain ops: the example, not the one-off kernel compile
    block = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL) if "KANConv2d" in b)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102  (the README's own example)
    assert tuple(scope["y"].shape) == (8, 64, 32, 32)


def _public(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    return [f"{module_name}.{name}" for name in getattr(module, "__all__", [])]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.mark.slow  # about 10 s: the API reference imports and renders every module
def test_site_builds_strictly_and_documents_every_public_symbol(site):
    assert (site / "index.html").exists() and (site / "inspect_digits_features0.png").exists()
    ids = set()
    for page in ("layers", "models", "interpret"):
        ids |= set(re.findall(r'id="([\w.]+)"', (site / "api" / page / "index.html").read_text()))
    families = ["kat", "vit_kan", "rkan", "kan_cnn", "kan_vgg", "kan_resnet", "baselines"]
    public = _public("kanvision.layers") + _public("kanvision.interpret") + _public("kanvision.models")
    public += [name for family in families for name in _public(f"kanvision.models.{family}")]
    assert len(public) > 60
    assert [name for name in public if name not in ids] == []
    # the benchmark tables were rendered from the results, not left as markers
    benchmarks = (site / "benchmarks" / "index.html").read_text()
    assert "results:" not in benchmarks and "<table>" in benchmarks
