"""The committed chapters are executed, clean and parameterised; the rendered pages show their figures."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
HTML = ROOT / "_build" / "html" / "book"


def test_every_toc_chapter_exists():
    toc = (ROOT / "_toc.yml").read_text()
    listed = re.findall(r"file: (book/\S+)", toc)
    assert listed, "the table of contents lists no chapter"
    for entry in listed:
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".ipynb", ".md")), entry
    assert {f"book/{c.stem}" for c in CHAPTERS} <= set(listed)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_is_committed_executed(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "no code cells"
    unexecuted = [i for i, c in enumerate(code) if "".join(c["source"]).strip() and c["execution_count"] is None]
    assert not unexecuted, f"code cells without execution count: {unexecuted}"
    errors = [o for c in code for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, "committed error outputs"
    assert any("parameters" in c["metadata"].get("tags", []) for c in code), "no cell tagged 'parameters'"
    assert "colab.research.google.com" in json.dumps(nb["cells"][0]), "first cell has no Colab badge"
    assert nb["metadata"]["accelerator"] == "GPU" and nb["metadata"]["colab"]["gpuType"], "Colab would not ask for a GPU"


@pytest.mark.skipif(not HTML.exists(), reason="HTML not built: run `make html`")
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_rendered_chapter_has_its_figures(path):
    page = HTML / f"{path.stem}.html"
    assert page.exists(), f"{page} missing"
    html = page.read_text()
    figures = sum(1 for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"
                  for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    assert html.count("<img") >= figures
    for src in re.findall(r'<img[^>]+src="([^"]+)"', html):
        if not src.startswith(("http", "data:")):
            assert (page.parent / src).resolve().exists(), src


def test_readme_table_is_the_benchmark_file():
    """The README's results table is copied from results/benchmark.md, never typed."""
    bench = (ROOT / "results" / "benchmark.md").read_text()
    average = bench.split("\n## ")[0]
    rows = [line for line in average.splitlines() if line.startswith("| ")]
    readme = (ROOT / "README.md").read_text()
    assert rows and all(row in readme for row in rows)


def test_repository_url_is_set_in_one_place():
    url = re.search(r"url: (\S+)", (ROOT / "_config.yml").read_text()).group(1)
    for path in CHAPTERS:
        found = set(re.findall(r'gcscoop_lib @ git\+([^\\"]+)\\"', path.read_text()))
        assert found == {url}, path.name


def test_readme_speed_table_is_the_benchmark_file():
    speed = (ROOT / "results" / "speed_cpu.md").read_text()
    rows = [line for line in speed.splitlines() if line.startswith("| ")]
    assert rows and all(row in (ROOT / "README.md").read_text() for row in rows)


@pytest.fixture(scope="module")
def paper_rehearsal(tmp_path_factory):
    """The Colab path rehearsed offline: an Oxford-Pets-layout fixture stands in for the data."""
    from test_paper_data import split_file_fixture

    root = tmp_path_factory.mktemp("paper")
    split_file_fixture(root / "data", per_split=(16, 4, 6))
    (root / "book").mkdir()
    return root


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_under_the_paper_profile(path, paper_rehearsal, monkeypatch):
    """profile = "paper" end to end, with the tiny CLIP in place of ViT-B/16 (no download here)."""
    import papermill

    monkeypatch.setenv("GCSCOOP_DATA", str(paper_rehearsal / "data"))
    monkeypatch.setenv("GCSCOOP_PAPER_MODEL", "tiny")
    out = paper_rehearsal / "book" / path.name
    papermill.execute_notebook(str(path), str(out), parameters={"profile": "paper"}, cwd=str(out.parent),
                               kernel_name="python3", progress_bar=False)
    if "open_chapter" in path.read_text():   # the appendix is about the tiny CLIP whatever the profile
        assert "oxford_pets" in printed(json.loads(out.read_text())), "the outputs never name the paper dataset"


def printed(nb: dict) -> str:
    """Everything a notebook's code cells printed or displayed as text."""
    texts = []
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            texts.append("".join(output.get("text", "")))
            for kind in ("text/plain", "text/markdown"):
                texts.append("".join(output.get("data", {}).get(kind, "")))
    return "\n".join(texts)


def test_stored_records_are_current():
    """Every record in results/ comes from the code and weights as they are now."""
    from gcscoop_lib import experiments
    from gcscoop_lib.records import read_records

    for path in sorted((ROOT / "results").glob("*.jsonl")):
        runner = experiments.Runner(ROOT / "results", device="cpu", records_file=path.name)
        stale = [r["key"] for r in read_records(path) if not runner.is_current(r)]
        assert not stale, f"{path.name}: {len(stale)} records from older code or weights: run `make book`"
