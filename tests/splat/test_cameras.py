import numpy as np
import pytest
import torch

from hf_eff.splat.cameras import camera_centres, camera_spread, describe_frame, look_at, same_frame


def test_camera_centres_are_the_eyes_of_look_at_poses():
    eyes = np.array([[3.0, 0.0, 1.0], [0.0, -2.0, 0.5], [1e6 + 1.0, 2.0, 3.0]])
    poses = np.stack([look_at(eye, eye + np.array([0.0, 1.0, 0.0]) if i == 0 else np.zeros(3))
                      for i, eye in enumerate(eyes)])
    np.testing.assert_allclose(camera_centres(poses), eyes, rtol=0, atol=1e-9)
    # [R | t] as COLMAP gives it, and a float32 tensor (the trainer's viewmats), read in float64
    np.testing.assert_allclose(camera_centres(poses[:, :3]), eyes, rtol=0, atol=1e-9)
    near = torch.as_tensor(poses[:2], dtype=torch.float32)
    assert camera_centres(near).dtype == np.float64
    np.testing.assert_allclose(camera_centres(near), eyes[:2], atol=1e-5)


def test_camera_spread_is_the_largest_distance_from_the_mean_or_a_given_point():
    centres = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [1.0, 3.0, 0.0]])
    assert camera_spread(centres) == pytest.approx(2.0)  # the mean is (1, 1, 0)
    assert camera_spread(centres, about=(0.0, 0.0, 0.0)) == pytest.approx(np.sqrt(10.0))
    assert camera_spread(centres[:1]) == 0.0


def test_same_frame_tells_the_capture_frame_from_each_normalisation():
    frame = np.diag([0.5, 0.5, 0.5, 1.0])
    assert same_frame(None, None) and same_frame(frame, frame.copy())
    assert not same_frame(frame, None) and not same_frame(None, frame) and not same_frame(frame, 2 * frame)
    assert describe_frame(None) == "in the capture's own coordinates"
    assert describe_frame(frame).startswith("normalised by [[0.5, 0.0, 0.0, 0.0]")
