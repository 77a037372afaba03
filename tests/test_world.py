"""The embedded world's tasks: deterministic, disjoint from the web, and strict about their input."""
import numpy as np
import pytest

from gcscoop_lib import splits, world


def test_embedded_tasks_are_deterministic_and_disjoint_from_the_web():
    a, b = world.build_embedded("textures"), world.build_embedded("textures")
    assert np.array_equal(a.test.images, b.test.images)
    web_images, _, task_images, _ = world.digits_split()
    web = {im.tobytes() for im in web_images}
    assert not any(im.tobytes() in web for im in task_images)


def test_a_task_is_shown_in_its_own_style_with_its_own_classes():
    shapes = world.build_embedded("shapes")
    assert shapes.style == world.EMBEDDED["shapes"]["style"] == "blurry"
    assert shapes.classnames == world.SHAPE_CLASSES
    assert (len(shapes.train), len(shapes.val), len(shapes.test)) == (2000, 1000, 2000)
    assert shapes.test.images.shape[1:] == (32, 32, 3) and shapes.test.images.dtype == np.uint8


def test_unknown_tasks_are_one_line_errors():
    with pytest.raises(ValueError, match=r"^unknown dataset 'cifar': choose one of \['coloured_shapes', "):
        world.build_embedded("cifar")


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("GCSCOOP_FASHION_DIR", str(tmp_path))
    monkeypatch.setenv("GCSCOOP_ALLOW_DOWNLOAD", "0")
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST .*GCSCOOP_ALLOW_DOWNLOAD=1.*GCSCOOP_FASHION_DIR"):
        world.load_fashion("t10k")


def test_the_twenty_class_task_puts_every_colour_and_shape_on_both_sides():
    names = world.COLOURED_SHAPE_CLASSES
    base, new = splits.base_new_classes(len(names))
    assert len(names) == 20 and len(set(names)) == 20
    for side in (base, new):
        words = {w for i in side for w in names[i].split()}
        assert set(world.PAIR_COLOURS) <= words and set(world.PAIR_SHAPES) <= words


def test_styles_change_only_the_images_they_are_applied_to():
    rng = np.random.default_rng(0)
    images = rng.random((5, 32, 32, 3)).astype(np.float32)
    styled = world.apply_style(images, ["clean", "noisy", "blurry", "dark", "inverted"], np.random.default_rng(1))
    clean = (np.clip(images, 0, 1) * 255).round().astype(np.uint8)
    assert np.array_equal(styled[0], clean[0])
    assert all(not np.array_equal(styled[i], clean[i]) for i in range(1, 5))
    assert np.array_equal(styled[4], (np.clip(1 - images[4], 0, 1) * 255).round().astype(np.uint8))
