"""One registry of every dataset a run can name."""
import pytest

from gcscoop_lib import datasets, paper_data, world


def test_every_name_is_an_embedded_task_or_a_paper_dataset():
    assert datasets.dataset_names() == sorted(world.EMBEDDED)
    assert datasets.all_dataset_names() == datasets.dataset_names() + sorted(paper_data.REGISTRY)


def test_a_task_is_built_once_per_process_until_the_cache_is_cleared():
    first = datasets.load_dataset("digits")
    assert datasets.load_dataset("digits", image_size=64) is first   # the embedded tasks ignore the size
    datasets.clear_dataset_cache()
    again = datasets.load_dataset("digits")
    assert again is not first and (again.test.images == first.test.images).all()
    assert again.name == "digits" and again.classnames == world.DIGIT_CLASSES


def test_an_unknown_dataset_lists_every_name():
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar10': choose one of \['coloured_shapes'.*'dtd'"):
        datasets.load_dataset("cifar10")


def test_an_embedded_task_is_drawn_once_per_machine_and_a_broken_copy_is_drawn_again(tmp_path, monkeypatch):
    monkeypatch.setenv("GCSCOOP_CACHE", str(tmp_path))
    drawn = world.build_embedded("shapes", "inverted")
    for attempt in ("drawn", "read back", "broken"):
        if attempt == "broken":
            stored.write_bytes(b"not an npz")
        datasets.clear_dataset_cache()
        task = datasets.load_dataset("shapes", style="inverted")
        (stored,) = (tmp_path / "world").glob("shapes_inverted_*.npz")
        assert (task.name, task.classnames, task.style, task.template) == \
            (drawn.name, drawn.classnames, drawn.style, drawn.template)
        for split in ("train", "val", "test"):
            mine, theirs = getattr(task, split), getattr(drawn, split)
            assert (mine.images == theirs.images).all() and (mine.labels == theirs.labels).all()
            assert (mine.masks == theirs.masks).all() and mine.classnames == theirs.classnames
    assert not list((tmp_path / "world").glob("*.tmp*"))


def test_a_registered_task_trains_by_name_in_its_own_styles(monkeypatch):
    monkeypatch.setattr(datasets, "_REGISTERED", {})
    shapes = datasets.load_dataset("shapes")
    built = []

    def mine(style):
        built.append(style)
        return datasets.Dataset("mine", shapes.classnames[:4], shapes.train, shapes.val, shapes.test,
                                style=style or "clean")

    datasets.register("mine", mine)
    assert datasets.all_dataset_names()[-1] == "mine" and "mine" not in datasets.dataset_names()
    assert datasets.load_dataset("mine").style == "clean" and datasets.load_dataset("mine", style="dark").style == "dark"
    datasets.load_dataset("mine")
    assert built == [None, "dark"]                         # built once per style
    from gcscoop_lib.training import TrainConfig
    assert TrainConfig(method="coop", dataset="mine").resolve().config.dataset == "mine"
    with pytest.raises(ValueError, match="'shapes' is already a dataset of the library: register yours under another"):
        datasets.register("shapes", mine)
