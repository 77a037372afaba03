"""Image features: the frozen image encoder run once per image set and view, kept on disk as
tensors only, and recomputed when the file on disk does not load."""
import dataclasses
import uuid

import numpy as np
import pytest
import torch

from gcscoop_lib import datasets, features
from gcscoop_lib.imagesets import ImageSet


def test_images_are_resized_to_the_model_and_normalised(clip):
    images = torch.full((2, 3, 8, 8), 0.5)
    out = features.normalise_images(clip, images)
    assert out.shape == (2, 3, clip.image_size, clip.image_size)
    mean, std = torch.tensor(clip.mean).view(1, 3, 1, 1), torch.tensor(clip.std).view(1, 3, 1, 1)
    assert torch.allclose(out, (0.5 - mean) / std * torch.ones_like(out), atol=1e-5)


def test_augmented_views_differ_and_are_reproducible(clip):
    images = datasets.load_dataset("shapes").test.images[:6]
    views = features.encode_images(clip, images, views=3, seed=0)
    assert views.shape == (3, 6, clip.model.text_projection.shape[1])
    assert not torch.allclose(views[0], views[1])
    assert torch.equal(views, features.encode_images(clip, images, views=3, seed=0))
    assert torch.allclose(views.norm(dim=-1), torch.ones(3, 6))
    assert features.encode_images(clip, images).shape == (6, views.shape[-1])   # one view: no view axis


@pytest.fixture
def fresh(clip, tmp_path, monkeypatch):
    """Images no test has encoded, a CLIP under a fingerprint of its own, and the cache file its
    features of those images will be looked for in (named as a probe CLIP's file is named)."""
    monkeypatch.setenv("GCSCOOP_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(uuid.uuid4().int % 2**32)
    images = ImageSet(rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8), np.arange(4), list("abcd"))
    probe = dataclasses.replace(clip, fingerprint=f"probe-{uuid.uuid4().hex}")
    expected = features.cached_features(probe, images)
    [written] = (tmp_path / "cache").iterdir()
    target = dataclasses.replace(clip, fingerprint=f"target-{uuid.uuid4().hex}")
    return target, images, written.with_name(written.name.replace(probe.fingerprint, target.fingerprint)), expected


def test_features_on_disk_are_read_instead_of_computed(fresh):
    clip, images, path, expected = fresh
    torch.save(torch.zeros_like(expected), path)
    assert torch.equal(features.cached_features(clip, images), torch.zeros_like(expected))


def test_a_truncated_cache_file_is_recomputed_and_replaced(fresh):
    clip, images, path, expected = fresh
    torch.save(expected, path)
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    assert torch.equal(features.cached_features(clip, images), expected)
    assert torch.equal(torch.load(path, weights_only=True), expected)


class Payload:
    def __reduce__(self):
        return print, ("code inside a cache file ran",)


def test_a_cache_file_is_read_as_tensors_only_never_as_code(fresh, capsys):
    clip, images, path, expected = fresh
    torch.save({"features": Payload()}, path)
    assert torch.equal(features.cached_features(clip, images), expected)
    assert "code inside a cache file ran" not in capsys.readouterr().out
    assert torch.equal(torch.load(path, weights_only=True), expected)


def crop_boxes(crop: str, n: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    """The width and height (fractions of the image) of n augmented views' crops, read off
    views of a coordinate map: channel 0 runs from -1 to 1 across, channel 1 down."""
    ramp = torch.linspace(-1, 1, 64)
    coords = torch.stack([ramp.expand(64, 64), ramp[:, None].expand(64, 64), torch.zeros(64, 64)])
    views = features.augment(coords.expand(n, 3, 64, 64).contiguous(), torch.Generator().manual_seed(0), crop)
    width = (views[:, 0, 32, -1] - views[:, 0, 32, 0]).abs() / 2
    height = (views[:, 1, -1, 32] - views[:, 1, 0, 32]) / 2
    return width, height


def test_the_square_crop_keeps_60_to_100_percent_of_the_area_at_its_aspect():
    width, height = crop_boxes("square")
    area = width * height
    assert torch.allclose(width, height, atol=0.02) and area.min() > 0.58 and area.max() <= 1.0


def test_the_papers_crop_keeps_8_to_100_percent_at_aspects_three_quarters_to_four_thirds():
    width, height = crop_boxes("papers")
    area, aspect = width * height, width / height
    assert area.min() > 0.07 and (area < 0.3).float().mean() > 0.15   # often far smaller than "square"
    unclamped = (width < 0.97) & (height < 0.97)
    assert aspect[unclamped].min() > 0.73 and aspect[unclamped].max() < 1.37


def test_an_unknown_crop_is_refused():
    with pytest.raises(ValueError, match="unknown crop 'round'"):
        features.augment(torch.zeros(1, 3, 8, 8), torch.Generator(), "round")
