"""A dataset's base/new task: the few-shot draw by seed, and each half's features encoded once."""
import torch

from gcscoop_lib import datasets, splits, world
from gcscoop_lib.tasks import prepare_task


def test_prepare_task_draws_by_seed_stores_the_split_and_encodes_each_half(clip, tmp_path):
    a = prepare_task(clip, "shapes", 4, 1, split_dir=tmp_path)
    again = prepare_task(clip, "shapes", 4, 1)
    other = prepare_task(clip, "shapes", 4, 2)
    assert (tmp_path / "shapes_shot4_seed1.json").exists()
    assert a.train_features.shape[:2] == (1, 20) and torch.equal(a.train_features, again.train_features)
    assert not torch.equal(a.train_features, other.train_features)
    assert a.base_names == world.SHAPE_CLASSES[:5] and a.new_names == world.SHAPE_CLASSES[5:]
    dataset = datasets.load_dataset("shapes")
    for split, name in ((a.val, "val"), (a.test, "test")):
        for half, classes in zip(("base", "new"), splits.base_new_classes(10)):
            subset = splits.select_classes(getattr(dataset, name), classes)
            assert torch.equal(split[half][1], torch.from_numpy(subset.labels))
            assert len(split[half][0]) == len(subset)
    assert not torch.equal(a.val["base"][0][:10], a.test["base"][0][:10])


def test_a_task_has_the_shots_of_each_base_class_and_its_datasets_prompt(task):
    assert torch.bincount(task.train_labels).tolist() == [4] * 5
    assert task.template == datasets.load_dataset("shapes").template == "a photo of a {}."


def test_augmented_views_are_drawn_per_view(clip):
    views = prepare_task(clip, "shapes", shots=2, seed=1, views=3)
    assert views.train_features.shape[:2] == (3, 10)
    assert not torch.equal(views.train_features[0], views.train_features[1])
