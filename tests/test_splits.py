"""CoOp's protocol on a dataset: the base/new split of its classes and the few-shot draw,
stored with the pool it was drawn from."""
import json

import numpy as np
import pytest

from gcscoop_lib import datasets, splits
from gcscoop_lib.imagesets import ImageSet


def test_base_new_split_follows_coop():
    assert splits.base_new_classes(10) == ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])
    assert splits.base_new_classes(7) == ([0, 1, 2, 3], [4, 5, 6])  # odd: base gets the extra class
    images = ImageSet(np.zeros((6, 2, 2, 3), np.uint8), np.array([0, 5, 6, 5, 1, 6]), [str(i) for i in range(7)])
    new = splits.select_classes(images, [5, 6])
    assert new.labels.tolist() == [0, 1, 0, 1] and new.classnames == ["5", "6"]


def test_too_few_classes_and_empty_class_lists_are_refused():
    with pytest.raises(ValueError, match="at least 2 classes"):
        splits.base_new_classes(1)
    with pytest.raises(ValueError, match="empty class list"):
        splits.select_classes(datasets.load_dataset("shapes").test, [])


def test_shots_beyond_a_class_are_refused():
    with pytest.raises(ValueError, match="3 shots asked but class 0 has only 2 images: lower --shots"):
        splits.few_shot_indices(np.array([0, 0, 1, 1, 1]), shots=3, seed=1)


def test_few_shot_indices_are_drawn_per_class_by_their_own_generator():
    labels = np.repeat(np.arange(3), 10)
    np.random.seed(0)
    first = splits.few_shot_indices(labels, 4, seed=5)
    np.random.seed(1)
    assert splits.few_shot_indices(labels, 4, seed=5) == first
    assert np.bincount(labels[first]).tolist() == [4, 4, 4] and len(set(first)) == 12


def test_few_shot_split_is_stored_and_reused(tmp_path):
    dataset = datasets.load_dataset("shapes")
    first = splits.few_shot_split(dataset, 16, 2, tmp_path)
    stored = json.loads((tmp_path / "shapes_shot16_seed2.json").read_text())
    assert stored["indices"] == first and len(first) == 16 * 5
    assert splits.few_shot_split(dataset, 16, 2, tmp_path) == first
    assert splits.few_shot_split(dataset, 16, 3) != first


def test_stored_split_must_come_from_the_same_images(tmp_path):
    dataset = datasets.load_dataset("shapes")
    splits.few_shot_split(dataset, 4, 1, tmp_path)
    path = tmp_path / "shapes_shot4_seed1.json"
    stored = json.loads(path.read_text())
    path.write_text(json.dumps({**stored, "pool": "something-else"}))
    with pytest.raises(ValueError, match="delete it to draw the split again"):
        splits.few_shot_split(dataset, 4, 1, tmp_path)


def test_few_shot_images_are_base_class_images_relabelled(tmp_path):
    dataset = datasets.load_dataset("shapes")
    train = splits.few_shot_images(dataset, 2, 1, tmp_path)
    assert train.classnames == dataset.classnames[:5] and np.bincount(train.labels).tolist() == [2] * 5
    pool = splits.select_classes(dataset.train, [0, 1, 2, 3, 4])
    assert np.array_equal(train.images, pool.images[splits.few_shot_split(dataset, 2, 1, tmp_path)])
