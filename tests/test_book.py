"""The committed chapters are executed, clean and parameterised; the rendered pages show their figures."""
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import sysconfig
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


def colab_cell(path: Path) -> str:
    """The source of a chapter's first code cell, the one that sets Colab up."""
    cells = json.loads(path.read_text())["cells"]
    return "".join(next(c for c in cells if c["cell_type"] == "code")["source"])


def test_every_chapter_has_the_same_colab_cell_and_repository():
    url = re.search(r"url: (\S+)", (ROOT / "_config.yml").read_text()).group(1)
    cells = {colab_cell(path) for path in CHAPTERS}
    assert len(cells) == 1, "the chapters' Colab cells differ"
    cell = cells.pop()
    assert set(re.findall(r'"(https://github.com/[^"]+)"', cell)) == {url}
    assert "os.chdir" in cell and "check=True" in cell


def test_colab_cell_stops_with_one_line_when_the_install_fails(tmp_path, monkeypatch, capsys):
    """An unreachable repository stops the cell with one line naming the fix, before anything is imported."""
    import types

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setenv("GCSCOOP_BOOK_REPO", (tmp_path / "no-such-repository").as_uri())
    monkeypatch.setenv("GCSCOOP_BOOK_DIR", str(tmp_path / "clone"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        exec(colab_cell(CHAPTERS[0]), {"__name__": "__main__"})
    message = str(stop.value)
    assert "\n" not in message and "internet connection" in message and "run this cell again" in message
    assert "no-such-repository" in capsys.readouterr().out, "git's own error is not shown"
    assert Path.cwd() == tmp_path


@pytest.fixture
def colab_kernel(tmp_path, monkeypatch):
    """A Jupyter kernel that stands in for Colab's: its own throwaway venv that sees the project's
    packages (but not the project's own editable install, whose .pth it does not run), with a fake
    google.colab imported at start-up. pip installs there, never into the project's .venv."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "google" / "colab").mkdir(parents=True)
    (site / "google" / "colab" / "__init__.py").write_text('"""Stand-in for Colab\'s module."""\n')
    (site / "colab_marker.pth").write_text("import google.colab\n")
    (site / "project_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    spec = tmp_path / "jupyter" / "kernels" / "colab-stand-in"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": [str(python), "-m", "ipykernel_launcher", "-f",
                                                           "{connection_file}"],
                                                  "display_name": "Colab stand-in", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return spec.name


def test_chapter_opened_alone_in_colab_prints_the_books_numbers(tmp_path, colab_kernel, monkeypatch):
    """One chapter opened alone, as Colab opens it: from an empty folder, under a stand-in Colab, its
    first cell clones the repository, installs it and works from the clone's book/ folder, so the
    chapter finds the tuned recipe and the run records and prints the book's numbers.

    The repository is a local clone of this one, so this runs the committed HEAD (its chapter, its
    library, its records): commit a change to the Colab cell before this test can see it.
    """
    import papermill

    installed = importlib.metadata.distribution("gcscoop_lib").read_text("direct_url.json")
    source = tmp_path / "repository"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(source)], check=True)
    chapter = source / "book" / "06_benchmark.ipynb"    # every number it prints is read from records
    alone = tmp_path / "colab"
    alone.mkdir()
    monkeypatch.setenv("GCSCOOP_BOOK_REPO", source.as_uri())
    monkeypatch.setenv("GCSCOOP_BOOK_DIR", str(tmp_path / "gcscoop-book"))
    out = alone / chapter.name
    papermill.execute_notebook(str(chapter), str(out), cwd=str(alone), kernel_name=colab_kernel,
                               progress_bar=False)
    assert (tmp_path / "gcscoop-book" / "results" / "tuning.json").exists()
    executed, committed = shown(json.loads(out.read_text())), shown(json.loads(chapter.read_text()))
    assert executed == committed and any(re.search(r"\d\.\d", text) for text in committed)
    assert importlib.metadata.distribution("gcscoop_lib").read_text("direct_url.json") == installed


def shown(nb: dict) -> list[str]:
    """What each code cell after the Colab cell printed or displayed as text (stdout only; cells
    whose output nbval ignores, such as run times, left out)."""
    code = [c for c in nb["cells"] if c["cell_type"] == "code"][1:]
    texts = []
    for cell in code:
        if "nbval-ignore-output" in cell["metadata"].get("tags", []):
            continue
        for output in cell.get("outputs", []):
            if output.get("name") != "stderr":
                texts.append("".join(output.get("text", "")) + "".join(
                    "".join(output.get("data", {}).get(kind, "")) for kind in ("text/plain", "text/markdown")))
    return texts


def test_readme_speed_table_is_the_benchmark_file():
    speed = (ROOT / "results" / "speed_cpu.md").read_text()
    rows = [line for line in speed.splitlines() if line.startswith("| ")]
    assert rows and all(row in (ROOT / "README.md").read_text() for row in rows)


@pytest.fixture(scope="module")
def paper_rehearsal(tmp_path_factory):
    """The Colab path rehearsed offline: an Oxford-Pets-layout fixture stands in for the data,
    beside the repository's design log of the world (the appendix shows it whatever the profile)."""
    from test_paper_data import split_file_fixture

    root = tmp_path_factory.mktemp("paper")
    split_file_fixture(root / "data", per_split=(16, 4, 6))
    (root / "book").mkdir()
    (root / "results").mkdir()
    shutil.copy(ROOT / "results" / "world_design.md", root / "results")
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
