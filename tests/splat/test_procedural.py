import numpy as np
import pytest

from hf_eff.splat.procedural import make_procedural_scene
from hf_eff.splat.scene import scene_views_to_tensors

SMALL = dict(num_train=4, num_test=2, width=32, height=24, num_points=300, supersample=1)


@pytest.fixture(scope="module")
def scene():
    return make_procedural_scene(seed=0, **SMALL)


def test_scene_is_deterministic_and_seeds_differ(scene):
    again = make_procedural_scene(seed=0, **SMALL)
    other = make_procedural_scene(seed=1, **SMALL)
    images, viewmats, Ks = scene_views_to_tensors(scene.views["train"])
    images_again, viewmats_again, _ = scene_views_to_tensors(again.views["train"])
    images_other, _, _ = scene_views_to_tensors(other.views["train"])
    assert (images == images_again).all() and (viewmats == viewmats_again).all()
    assert (scene.point_arrays()[0] == again.point_arrays()[0]).all()
    assert (images.float() - images_other.float()).abs().mean() / 255 > 0.05  # uint8 images


def test_splits_sizes_and_textured_content(scene):
    assert len(scene.views["train"]) == 4 and len(scene.views["test"]) == 2
    images, viewmats, Ks = scene_views_to_tensors(scene.views["test"])
    assert images.shape == (2, 24, 32, 3)
    # Ray-traced textures: many distinct colours, not a flat image.
    assert len(np.unique(images.reshape(-1, 3).numpy(), axis=0)) > 50
    train_poses = scene_views_to_tensors(scene.views["train"])[1]
    assert all((viewmats[i] - pose).abs().max() > 1e-3 for i in range(2) for pose in train_poses)


def test_cameras_look_at_the_center_from_the_radius(scene):
    _, viewmats, Ks = scene_views_to_tensors(scene.views["train"])
    center = np.append(scene.center, 1.0)
    for viewmat, K in zip(viewmats.double().numpy(), Ks.double().numpy()):
        camera_point = viewmat @ center
        assert camera_point[2] == pytest.approx(scene.radius, rel=1e-5)  # in front, at the radius
        pixel = K @ camera_point[:3]
        np.testing.assert_allclose(pixel[:2] / pixel[2], [16, 12], atol=1e-3)


def test_points_lie_on_visible_surfaces_with_their_colour(scene):
    xyz, rgb = scene.point_arrays()
    assert xyz.shape == (300, 3) and rgb.dtype == np.uint8
    noise = 0.01 * scene.radius
    assert xyz[:, 2].min() > -5 * noise, "points must lie on or above the ground"
    assert np.hypot(xyz[:, 0], xyz[:, 1]).max() < 3.0 + 5 * noise
    assert rgb.std(0).max() > 10, "points carry the scene's colours"


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_train"):
        make_procedural_scene(num_train=0)
    with pytest.raises(ValueError, match="width"):
        make_procedural_scene(width=0)
    with pytest.raises(ValueError, match="num_objects must be >= 0"):
        make_procedural_scene(num_objects=-1)


@pytest.mark.timeout(60)  # the placement loop used to retry without end
def test_too_many_objects_raise_instead_of_retrying_forever():
    # Seed 0 places 10 objects without overlap in the allowed tries, not 12.
    with pytest.raises(ValueError, match=r"num_objects=12: only \d+ non-overlapping objects fit .* 20000 random"):
        make_procedural_scene(seed=0, num_objects=12, **SMALL)
