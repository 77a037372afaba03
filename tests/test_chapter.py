"""What a chapter opens: its profile's recipe and knobs (or the reader's), its datasets, its CLIP,
and the runs, solutions and tables it asks for, written to the reader's folder."""
import json

import pytest

from gcscoop_lib import datasets, protocol, records, settings
from gcscoop_lib.chapter import cpu_warning, open_chapter
from gcscoop_lib.reports import Stat

TUNING = {"recipe": {"lr": 0.01, "epochs": 2, "batch_size": 32}, "knobs": {"sam": {"rho": 0.05}, "kgcoop": {"lam": 4.0}}}


@pytest.fixture
def book(tmp_path, monkeypatch):
    """The book's results folder, holding its tuned recipe (two short epochs) and no runs."""
    folder = tmp_path / "book"
    folder.mkdir()
    (folder / "tuning.json").write_text(json.dumps(TUNING))
    monkeypatch.setenv("GCSCOOP_BOOK_RESULTS", str(folder))
    return folder


def test_the_tiny_profile_opens_the_books_tuned_recipe_and_knobs(book):
    chapter = open_chapter("tiny", device="cpu")
    assert chapter.recipe == TUNING["recipe"] and chapter.knobs == TUNING["knobs"] and chapter.tuned
    assert chapter.datasets == datasets.dataset_names() and chapter.clip.name == "tiny"
    assert chapter.runner.dir == settings.current().results != book
    assert chapter.knob("sam", "rho") == 0.05 and chapter.knob("gcscoop", "rho") == 0.1   # tuned, default
    run = chapter.config("sam", "shapes", seed=2)
    assert (run.config.lr, run.config.epochs, run.config.batch_size, run.config.seed) == (0.01, 2, 32, 2)
    assert run.config.knobs == {"rho": 0.05} and run.config.model == "tiny"


def test_a_readers_knobs_and_recipe_override_the_books(book):
    chapter = open_chapter("tiny", device="cpu", recipe={"epochs": 3, "lr": None},
                           knobs={"sam": {"rho": 0.2}, "kgcoop": {"lam": None}})
    assert chapter.config("sam", "shapes").config.knobs == {"rho": 0.2} and chapter.knob("sam", "rho") == 0.2
    assert chapter.recipe == {"lr": 0.01, "epochs": 3, "batch_size": 32}   # None keeps the book's value
    assert chapter.knob("kgcoop", "lam") == 4.0
    assert chapter.config("sam", "shapes", rho=0.5).config.knobs == {"rho": 0.5}   # this run only
    assert chapter.config("sam", "shapes").key != open_chapter("tiny", device="cpu").config("sam", "shapes").key


@pytest.mark.parametrize("recipe,knobs,message", [
    (None, {"sam": {"lam": 1.0}}, "sam has no knob 'lam': it takes rho"),
    (None, {"sam": {"rho": -1.0}}, "rho must be >= 0, got -1.0"),
    (None, {"sam": {"rho": "wide"}}, "knob rho must be a float, got 'wide'"),
    (None, {"adam": {"lr": 1.0}}, "unknown method 'adam'"),
    ({"momentum": 0.5}, None, "the recipe has no 'momentum': it sets lr, epochs, batch_size"),
])
def test_an_unknown_or_bad_override_fails_in_one_line(book, recipe, knobs, message):
    with pytest.raises(ValueError) as error:
        open_chapter("tiny", device="cpu", recipe=recipe, knobs=knobs)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_chapter_trains_what_is_not_stored_and_says_where_it_wrote(book):
    chapter = open_chapter("tiny", device="cpu")
    assert chapter.provenance() == "Every run above was loaded from stored records."
    record = chapter.record("coop", "shapes")
    assert chapter.provenance() == (f"1 run trained now (the others loaded from stored records); their records "
                                    f"and solutions were written to {settings.current().results}.")
    assert records.read_records(settings.current().results / "runs.jsonl") == [record]
    assert sorted(p.name for p in book.iterdir()) == ["tuning.json"]
    again = open_chapter("tiny", device="cpu")
    assert again.record("coop", "shapes") == record
    assert again.provenance() == "Every run above was loaded from stored records."


def test_a_chapters_solution_is_trained_once_and_its_task_shared(book):
    chapter = open_chapter("tiny", device="cpu")
    first = chapter.solution("sam", "shapes")
    again = open_chapter("tiny", device="cpu").solution("sam", "shapes")
    assert first.trained_now and not again.trained_now and again.record == first.record
    assert again.run.config.knobs == {"rho": 0.05}
    task = chapter.task("shapes")
    assert task.base_names == first.model.learner.classnames and len(task.train_labels) == 16 * 5


def test_a_table_summarises_methods_datasets_and_seeds(book):
    table = open_chapter("tiny", device="cpu").table(["zeroshot", "coop"], seeds=(1, 2), datasets=["shapes"])
    assert [(r["method"], r["seed"]) for r in table.records] == [("zeroshot", 1), ("zeroshot", 2), ("coop", 1),
                                                                 ("coop", 2)]
    assert isinstance(table["coop"]["shapes"]["H"], Stat) and table["coop"]["average"]["seeds"] == 2
    assert table["zeroshot"]["shapes"]["base"].mean == pytest.approx(
        sum(r["base"] for r in table.records[:2]) / 2)


def test_a_knob_grid_gives_one_table_per_setting_trained_as_one_population(book):
    chapter = open_chapter("tiny", device="cpu")
    grid = [{"rho": 0.02}, {"rho": 0.5}]
    tables = chapter.tables(["sam"], grid, seeds=(1,), datasets=["shapes"], records="grid.jsonl")
    stored = records.read_records(chapter.runner.dir / "grid.jsonl")
    assert [r["population"] for r in stored] == [2, 2]
    for knobs, table in zip(grid, tables):
        assert [r["config"]["knobs"] for r in table.records] == [knobs]
        assert table.records == chapter.table(["sam"], seeds=(1,), datasets=["shapes"], records="grid.jsonl",
                                              **knobs).records


def test_the_tiny_profile_needs_the_books_tuned_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("GCSCOOP_BOOK_RESULTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="python -m gcscoop_lib tune"):
        open_chapter("tiny", device="cpu")


def test_the_paper_profile_uses_gcscoops_recipe_and_default_knobs(book, monkeypatch):
    monkeypatch.setenv("GCSCOOP_PAPER_MODEL", "tiny")   # in place of ViT-B/16: no download here
    chapter = open_chapter("paper", ["dtd", "eurosat"], device="cpu")
    assert chapter.recipe == protocol.PAPER_RECIPE and chapter.knobs == {} and not chapter.tuned
    assert chapter.datasets == ["dtd", "eurosat"] and chapter.runner.dir == settings.current().results / "paper"
    run = chapter.config("gcscoop", "dtd")
    assert run.config.knobs == {"rho": 0.1, "beta_low": 0.5, "beta_up": 0.8} and run.config.batch_size == 128


def test_unknown_profiles_and_paper_datasets_are_refused(book):
    with pytest.raises(ValueError, match=r"unknown profile 'huge': choose one of \['tiny', 'paper'\]"):
        open_chapter("huge")
    with pytest.raises(ValueError, match="unknown paper dataset 'cifar10'"):
        open_chapter("paper", ["cifar10"])


def test_a_real_size_clip_on_a_cpu_is_warned_about():
    assert "use a GPU runtime" in cpu_warning("ViT-B-16", "cpu")
    assert cpu_warning("tiny", "cpu") is None
    assert cpu_warning("ViT-B-16", "cuda") is None


def test_computed_values_are_stored_once_and_recomputed_under_another_setting(tmp_path, monkeypatch):
    from gcscoop_lib import chapter

    monkeypatch.setenv("GCSCOOP_RESULTS", str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return {"curve": [0.5, 0.25]}

    book = chapter.open_chapter(device="cpu")
    assert book.computed("probe", compute, reads=("sam",)) == {"curve": [0.5, 0.25]} and len(calls) == 1
    assert chapter.open_chapter(device="cpu").computed("probe", compute, reads=("sam",)) == {"curve": [0.5, 0.25]}
    assert len(calls) == 1 and (tmp_path / chapter.COMPUTED).exists()
    other = chapter.open_chapter(device="cpu", knobs={"sam": {"rho": 0.2}})
    other.computed("probe", compute, reads=("sam",))
    assert len(calls) == 2


def test_the_librarys_warnings_reach_a_reader_in_one_line():
    from gcscoop_lib import chapter, training

    one = chapter.reader_warning("CoOp on shapes diverged: lower the learning rate", UserWarning,
                                 training.__file__, 217, "warnings.warn(...)")
    assert one == "UserWarning: CoOp on shapes diverged: lower the learning rate\n"
    other = chapter.reader_warning("elsewhere", UserWarning, "/somewhere/else.py", 3, "x = 1")
    assert other.startswith("/somewhere/else.py:3: UserWarning: elsewhere")
