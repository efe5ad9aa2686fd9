import numpy as np
import torch

from hf_eff.splat.cameras import camera_centres, look_at


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
