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
