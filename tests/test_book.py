"""The committed chapters are executed, clean and parameterised; the rendered pages show their figures."""
import importlib.metadata
import json
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
HTML = ROOT / "_build" / "html" / "book"
sys.path.insert(0, str(ROOT / "scripts"))
from run_book import CELL_TIMEOUT, patient_replies  # noqa: E402


def execute(notebook: Path, out: Path, **options) -> None:
    """papermill as the book's build runs it: the kernel's replies polled in slices
    (run_book.patient_replies; a missed reply once left chapter 2's widget cell waiting for ever
    under the paper profile) and each cell bounded, so that a kernel that stops answering fails
    the test instead of stalling the suite."""
    import papermill

    patient_replies()
    papermill.execute_notebook(str(notebook), str(out), **{"kernel_name": "python3", **options},
                               progress_bar=False, execution_timeout=CELL_TIMEOUT)


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
    """The README's one results table is the average table of results/benchmark.md, copied
    whole (header, separator and rows, in order), never typed."""
    readme = (ROOT / "README.md").read_text()
    average = (ROOT / "results" / "benchmark.md").read_text().split("\n## ")[0]
    table = "\n".join(line for line in average.splitlines() if line.startswith("|"))
    assert table.count("\n") >= 3 and table in readme
    tables = re.findall(r"^\| method \|", readme, re.M)
    assert len(tables) == 1, f"the README shows {len(tables)} results tables: one, and links to the rest"


def test_readme_protocols_link_is_the_current_protocols_file():
    """The README sends readers to results/protocols.md for the other protocols' tables, and
    that file is what the stored protocols give now."""
    from gcscoop_lib import protocols, runs, tuning

    assert "](results/protocols.md)" in (ROOT / "README.md").read_text()
    written = (ROOT / "results" / "protocols.md").read_text()
    runner = runs.Runner(ROOT / "results", device="cpu")
    assert protocols.report(runner, tuning.load_tuning(ROOT / "results" / "tuning.json")) == written


def test_stored_protocols_are_current():
    from gcscoop_lib import protocols, tuning

    stored = protocols.read_store(ROOT / "results" / protocols.STORE)
    assert set(stored) == set(protocols.PROTOCOLS)
    tuned = tuning.load_tuning(ROOT / "results" / "tuning.json")
    stale = [name for name, entry in stored.items()
             if entry["stamp"] != protocols.protocol_stamp(name, tuned, entry["arguments"])]
    assert not stale, f"{stale}: stored under older code or runs: run `python -m gcscoop_lib protocol all`"


def colab_cell(path: Path) -> str:
    """The source of a chapter's first code cell, the one that sets Colab up."""
    cells = json.loads(path.read_text())["cells"]
    return "".join(next(c for c in cells if c["cell_type"] == "code")["source"])


COLAB_URL, COLAB_DIR = "https://github.com/gcscoop-book/gcscoop-book", "/content/book"


def test_every_chapter_has_the_same_short_colab_cell_and_repository():
    url = re.search(r"url: (\S+)", (ROOT / "_config.yml").read_text()).group(1)
    cells = {colab_cell(path) for path in CHAPTERS}
    assert len(cells) == 1, "the chapters' Colab cells differ"
    cell = cells.pop()
    assert len(cell.splitlines()) <= 6 and max(map(len, cell.splitlines())) <= 79
    assert url == COLAB_URL and f'"{COLAB_URL}", "{COLAB_DIR}"' in cell
    from gcscoop_lib import settings

    assert str(settings.COLAB_BOOK) == COLAB_DIR, "the library looks for the book where the cell does not put it"


def colab_version(cell: str, repository: str, folder: Path) -> str:
    """The Colab cell with a local repository and folder in place of GitHub and /content."""
    return cell.replace(f'"{COLAB_URL}", "{COLAB_DIR}"', f'"{repository}", "{folder}"')


def test_colab_cell_stops_with_one_line_when_the_install_fails(tmp_path, monkeypatch, capfd):
    """An unreachable repository stops the cell with one line naming the fix, and git's own error is shown."""
    import types

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    cell = colab_version(colab_cell(CHAPTERS[0]), (tmp_path / "no-such-repository").as_uri(), tmp_path / "book")
    with pytest.raises(SystemExit) as stop:
        exec(cell, {"__name__": "__main__"})
    message = str(stop.value)
    assert "\n" not in message and "internet" in message and "run again" in message
    assert "no-such-repository" in capfd.readouterr().err, "git's own error is not shown"
    assert not (tmp_path / "book").exists()


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
    first cell clones the repository and installs its library, and the chapter finds the book's tuned
    recipe and run records in the clone and prints the book's numbers.

    The repository is a local clone of this one, so this runs the committed HEAD (its chapter, its
    library, its records): commit a change to the Colab cell before this test can see it.
    """
    installed = importlib.metadata.distribution("gcscoop_lib").read_text("direct_url.json")
    source = tmp_path / "repository"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(source)], check=True)
    chapter = json.loads((source / "book" / "07_benchmark.ipynb").read_text())   # it prints only records
    first = next(c for c in chapter["cells"] if c["cell_type"] == "code")
    clone = tmp_path / "book"
    first["source"] = colab_version("".join(first["source"]), source.as_uri(), clone)
    alone = tmp_path / "colab"
    alone.mkdir()
    (alone / "07_benchmark.ipynb").write_text(json.dumps(chapter))
    monkeypatch.setenv("GCSCOOP_BOOK_RESULTS", str(clone / "results"))   # where Colab's clone would be
    out = alone / "executed.ipynb"
    execute(alone / "07_benchmark.ipynb", out, cwd=str(alone), kernel_name=colab_kernel)
    assert (clone / "results" / "tuning.json").exists()
    executed = shown(json.loads(out.read_text()))
    committed = shown(json.loads((ROOT / "book" / "07_benchmark.ipynb").read_text()))
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


def test_the_about_page_includes_the_measured_tables():
    """The speed, pipeline and mutation tables are included from their results files, never copied."""
    about = (ROOT / "book" / "10_about.md").read_text()
    for name in ("speed_cpu.md", "speed_cpu_cocoop.md", "speed_ViT-B-16_cpu.md", "speed_ViT-B-16_cpu_cocoop.md",
                 "pipeline_cpu.md", "mutation.md"):
        assert f"```{{include}} ../results/{name}" in about and (ROOT / "results" / name).exists(), name


@pytest.fixture(scope="module")
def paper_rehearsal(tmp_path_factory):
    """The Colab path rehearsed offline: an Oxford-Pets-layout fixture stands in for the data,
    beside the repository's design log of the world (the appendix shows it whatever the profile)."""
    from test_paper_data import split_file_fixture

    root = tmp_path_factory.mktemp("paper")
    split_file_fixture(root / "data", per_split=(16, 4, 6))
    (root / "book").mkdir()
    return root


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_under_the_paper_profile(path, paper_rehearsal, monkeypatch):
    """profile = "paper" end to end, with the tiny CLIP in place of ViT-B/16 (no download here)."""
    monkeypatch.setenv("GCSCOOP_DATA", str(paper_rehearsal / "data"))
    monkeypatch.setenv("GCSCOOP_PAPER_MODEL", "tiny")
    out = paper_rehearsal / "book" / path.name
    execute(path, out, parameters={"profile": "paper"}, cwd=str(out.parent))
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


def test_stored_records_and_solutions_are_current():
    """Every record in results/ comes from the code and weights as they are now, and so does every
    stored solution; every trained record has its solution."""
    from gcscoop_lib import runs
    from gcscoop_lib.records import read_records, solution_path

    for path in sorted((ROOT / "results").glob("*.jsonl")):
        runner = runs.Runner(ROOT / "results", device="cpu", records_file=path.name)
        stale = [r["key"] for r in read_records(path) if not runner.is_current(r)]
        assert not stale, f"{path.name}: {len(stale)} records from older code or weights: run `make book`"
        missing = [r["key"] for r in read_records(path)
                   if r["method"] != "zeroshot" and not solution_path(ROOT / "results", r["key"]).exists()]
        assert not missing, f"{path.name}: {len(missing)} trained records without their solution: run `make book`"
    stale = runs.stale_solutions(ROOT / "results")
    assert not stale, f"{len(stale)} solutions without a current record: run `python -m gcscoop_lib prune`"


def tracked_results() -> str:
    """What git says about results/: empty while nothing there was changed or added."""
    return subprocess.run(["git", "status", "--porcelain", "--", "results"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout


@pytest.mark.parametrize("where", ["root", "empty"])
def test_a_chapter_run_from_anywhere_prints_the_books_numbers(where, tmp_path, monkeypatch):
    """Run from the repository root or from an empty folder, a chapter finds the book's recipe and
    records through the installed library and prints what the committed chapter prints."""
    reader = tmp_path / "my-runs"
    monkeypatch.setenv("GCSCOOP_RESULTS", str(reader))
    cwd = ROOT if where == "root" else tmp_path
    before = tracked_results()
    chapter = ROOT / "book" / "07_benchmark.ipynb"
    out = tmp_path / "out.ipynb"
    execute(chapter, out, cwd=str(cwd))
    assert shown(json.loads(out.read_text())) == shown(json.loads(chapter.read_text()))
    assert tracked_results() == before and not reader.exists(), "a stored run was trained again"


def test_a_knob_passed_to_a_chapter_changes_its_numbers_and_words_and_not_the_books_records(tmp_path, monkeypatch):
    """`papermill -p rho 0.2` on the SAM chapter: its settings table says the knob was set here, its
    SAM-CoOp numbers change, it says what it trained and where, and the book's records stay as they are."""
    reader = tmp_path / "my-runs"
    monkeypatch.setenv("GCSCOOP_RESULTS", str(reader))
    before = tracked_results()
    chapter = ROOT / "book" / "04_sam.ipynb"
    out = tmp_path / "out.ipynb"
    execute(chapter, out, parameters={"rho": 0.2, "seeds": [1]}, cwd=str(chapter.parent))
    executed, committed = printed(json.loads(out.read_text())), printed(json.loads(chapter.read_text()))
    assert "| SAM-CoOp | rho = 0.2 | set in this notebook |" in executed
    results = [line for line in executed.splitlines() if line.startswith("| SAM-CoOp | ") and "rho" not in line]
    kept = [line for line in results if "(epoch " in line]     # the stopping table keeps the book's settings
    assert kept and all(line in committed for line in kept)
    changed = [line for line in results if line not in kept]
    assert changed and not any(line in committed for line in changed)
    assert "trained now" in executed and str(reader) in executed
    assert tracked_results() == before and (reader / "runs.jsonl").exists()


def test_a_readers_command_line_runs_leave_the_books_records_alone(tmp_path):
    """`train` and `benchmark` without --results write to the reader's folder (~/gcscoop_runs) and say so."""
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("GCSCOOP_")}
    env.update(HOME=str(tmp_path), OMP_NUM_THREADS="1")
    before = tracked_results()
    train = subprocess.run([sys.executable, "-m", "gcscoop_lib", "train", "--method", "kgcoop", "--dataset",
                            "shapes", "--knob", "lam=2", "--seed", "7", "--epochs", "3"],
                           env=env, capture_output=True, text=True, check=True)
    assert "trained now" in train.stdout and str(tmp_path / "gcscoop_runs") in train.stdout
    bench = subprocess.run([sys.executable, "-m", "gcscoop_lib", "benchmark", "--methods", "zeroshot",
                            "--datasets", "shapes", "--seeds", "1"], env=env, capture_output=True, text=True,
                           check=True)
    assert str(tmp_path / "gcscoop_runs" / "benchmark.md") in bench.stdout
    assert tracked_results() == before
    assert (tmp_path / "gcscoop_runs" / "runs.jsonl").exists() and (tmp_path / "gcscoop_runs" / "benchmark.md").exists()
