import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hf_eff.splat import GaussianModel, make_procedural_scene
from hf_eff.splat.cameras import look_at_camera_to_world, pinhole_intrinsics
from hf_eff.splat.trajectory import (
    camera_path,
    ellipse_path,
    focus_point,
    interpolated_path,
    nearest_first_order,
    render_trajectory,
    views_camera_to_world,
    write_gif,
)

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "splat_train.py"


@pytest.fixture(scope="module")
def scene():
    return make_procedural_scene(seed=2, num_train=8, num_test=1, width=24, height=20, num_points=300, supersample=1)


@pytest.fixture(scope="module")
def model(scene):
    xyz, rgb = scene.point_arrays()
    return GaussianModel.from_points(xyz, rgb, sh_degree=0)


def rigid(seed=0, scale=1.0):
    """A random similarity transform [4, 4]: a world whose up is not z (as a COLMAP world)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    transform = np.eye(4)
    transform[:3, :3] = scale * q
    transform[:3, 3] = [3.0, -7.0, 11.0]
    return transform


def moved(camera_to_world, transform):
    """Camera-to-world poses moved by a similarity transform, keeping rotations orthonormal."""
    poses = transform @ camera_to_world
    poses[:, :3, :3] /= np.cbrt(np.linalg.det(transform[:3, :3]))
    return poses


def arc_poses(start_degrees, end_degrees, count):
    """Camera-to-world poses on an arc of radius 4 at height 1.5, looking at the origin."""
    azimuths = np.radians(np.linspace(start_degrees, end_degrees, count))
    eyes = np.stack([4 * np.cos(azimuths), 4 * np.sin(azimuths), np.full(count, 1.5)], 1)
    return np.stack([look_at_camera_to_world(eye, (0.0, 0.0, 0.0)) for eye in eyes])


def assert_camera_poses(poses, num_frames):
    assert poses.shape == (num_frames, 4, 4)
    rotations = poses[:, :3, :3]
    np.testing.assert_allclose(rotations.transpose(0, 2, 1) @ rotations, np.broadcast_to(np.eye(3), rotations.shape),
                               atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-9)
    np.testing.assert_array_equal(poses[:, 3], np.broadcast_to([0.0, 0.0, 0.0, 1.0], (num_frames, 4)))


@pytest.mark.parametrize("kind", ["ellipse", "interpolated"])
def test_paths_are_orthonormal_camera_to_world_poses(scene, kind):
    assert_camera_poses(camera_path(scene.views["train"], kind, 13), 13)


def test_focus_point_is_where_the_cameras_look():
    target = np.array([0.5, -2.0, 1.0])
    eyes = [(4, 0, 1), (0, 5, 3), (-3, -1, 2), (1, 1, 6)]
    poses = np.stack([look_at_camera_to_world(eye, target) for eye in eyes])
    np.testing.assert_allclose(focus_point(poses), target, atol=1e-9)


def test_interpolated_path_goes_through_the_training_cameras_in_order(scene):
    poses = views_camera_to_world(scene.views["train"])
    path = interpolated_path(poses, 600, smoothness=0.0)
    # Starts at the first camera and ends at the last.
    np.testing.assert_allclose(path[[0, -1]], poses[[0, -1]], atol=1e-6)
    # Every camera lies on the path: within one frame's step of a frame, looking the same way.
    step = np.linalg.norm(np.diff(path[:, :3, 3], axis=0), axis=1).max()
    distances = np.linalg.norm(poses[:, None, :3, 3] - path[None, :, :3, 3], axis=-1)
    assert distances.min(1).max() < step
    nearest = distances.argmin(1)
    assert (np.diff(nearest) > 0).all()  # in the training order
    cosines = np.einsum("ci,ci->c", poses[:, :3, 2], path[nearest, :3, 2])
    assert cosines.min() > np.cos(np.radians(2))


def test_camera_paths_loop_without_a_jump():
    """write_gif loops: the interpolated path goes out and back, the last frame a step from the first."""
    from hf_eff.splat import views_dataset

    world_to_camera = np.linalg.inv(arc_poses(0, 180, 9))  # a half circle, in capture order
    views = views_dataset([np.zeros((4, 4, 3), np.uint8)] * 9, [pinhole_intrinsics(4, 4, 60.0)] * 9, world_to_camera)
    for kind in ("ellipse", "interpolated"):
        for num_frames in (40, 41):
            path = camera_path(views, kind, num_frames)
            positions = np.concatenate([path[:, :3, 3], path[:1, :3, 3]])
            steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
            assert steps.max() <= 1.2 * np.median(steps)
            # No frame repeated at a turn (an odd count turns between two frames: half a step).
            assert steps.min() >= 0.4 * np.median(steps)
    path = camera_path(views, "interpolated", 40)
    np.testing.assert_allclose(path[1:], path[:0:-1], atol=1e-9)  # back the way it came
    one_way = interpolated_path(views_camera_to_world(views), 21)
    np.testing.assert_allclose(path[[0, 20]], one_way[[0, -1]], atol=1e-9)


def test_interpolated_path_can_chain_the_cameras_nearest_first():
    in_order = arc_poses(0, 180, 9)
    shuffled = in_order[[0, 5, 2, 8, 1, 7, 3, 6, 4]]  # the first stays first
    np.testing.assert_array_equal(nearest_first_order(shuffled), [0, 4, 2, 6, 8, 1, 7, 5, 3])
    np.testing.assert_allclose(interpolated_path(shuffled, 30, order="nearest"), interpolated_path(in_order, 30),
                               atol=1e-9)
    with pytest.raises(ValueError, match="interpolated_path: order must be one of \\('capture', 'nearest'\\), got 'sorted'"):
        interpolated_path(in_order, 30, order="sorted")


def test_the_example_chains_the_procedural_views_nearest_first():
    # The procedural cameras sit at golden-angle azimuths: in order, the path zigzags round the scene.
    example = runpy.run_path(str(SCRIPT))
    scene = make_procedural_scene(seed=0, num_train=16, num_test=1, width=8, height=8, num_points=50, supersample=1)
    arguments = example["TrajectoryArguments"](render_trajectory="interpolated", trajectory_frames=48)
    procedural = example["build_camera_path"](scene, arguments, procedural=True)
    np.testing.assert_allclose(procedural, camera_path(scene.views["train"], "interpolated", 48, order="nearest"))
    captured = example["build_camera_path"](scene, arguments, procedural=False)  # a capture's order is its walk
    np.testing.assert_allclose(captured, camera_path(scene.views["train"], "interpolated", 48))

    def length(path):
        return np.linalg.norm(np.diff(path[:, :3, 3], axis=0), axis=1).sum()

    assert length(procedural) < length(captured) / 3
    for order, expected in (("capture", captured), ("nearest", procedural)):  # the flag wins for any scene
        given = example["TrajectoryArguments"](render_trajectory="interpolated", trajectory_frames=48,
                                               trajectory_order=order)
        for is_procedural in (True, False):
            np.testing.assert_allclose(example["build_camera_path"](scene, given, procedural=is_procedural), expected)


def test_interpolated_path_smooths_in_scene_units(scene):
    """The spline is fitted in units of the camera spread: a scaled, turned world gives the same path."""
    poses = views_camera_to_world(scene.views["train"])
    transform = rigid(seed=1, scale=250.0)
    np.testing.assert_allclose(moved(interpolated_path(poses, 40), transform),
                               interpolated_path(moved(poses, transform), 40), rtol=1e-6, atol=1e-6 * 250)


@pytest.mark.parametrize("turned", [False, True], ids=["procedural", "turned-world"])
def test_ellipse_path_keeps_the_focus_in_view(scene, turned):
    poses = views_camera_to_world(scene.views["train"])
    up = np.array([0.0, 0.0, 1.0])  # the procedural scene's
    if turned:  # up is no longer world z: the orbit must follow the cameras' up
        poses = moved(poses, rigid(seed=0))
        up = rigid(seed=0)[:3, :3] @ up
    num_frames = 30
    path = ellipse_path(poses, num_frames)
    assert_camera_poses(path, num_frames)
    focus = focus_point(poses)
    K = np.asarray(scene.views["train"][0]["K"])
    width, height = 24, 20
    camera_points = np.einsum("fij,j->fi", np.linalg.inv(path), np.append(focus, 1.0))[:, :3]
    assert (camera_points[:, 2] > 0).all()
    pixels = (camera_points @ K.T)[:, :2] / camera_points[:, 2:]
    assert ((pixels >= 0) & (pixels < [width, height])).all()
    # A full turn about the world's up axis, level (no roll; the scene's poses are float32), at
    # the cameras' height.
    np.testing.assert_allclose(path[:, :3, 0] @ up, 0.0, atol=1e-6)
    offsets = path[:, :3, 3] - focus
    np.testing.assert_allclose(offsets @ up, ((poses[:, :3, 3] - focus) @ up).mean(), rtol=1e-6)
    horizontal = offsets - np.outer(offsets @ up, up)
    turn = np.cross(horizontal, np.roll(horizontal, -1, axis=0)) @ up
    assert (turn > 0).all()  # counter-clockwise seen from above, each step
    directions = horizontal / np.linalg.norm(horizontal, axis=1, keepdims=True)
    angles = np.arccos(np.clip(np.einsum("fi,fi->f", directions, np.roll(directions, -1, axis=0)), -1, 1))
    np.testing.assert_allclose(angles.sum(), 2 * np.pi, rtol=1e-6)


def test_render_trajectory_renders_the_path_poses_in_batches(scene, model, monkeypatch):
    views = scene.views["train"]
    poses = views_camera_to_world(views)[:5]
    K = np.asarray(views[0]["K"])
    calls = []
    render = model.render

    def recording_render(viewmats, *args, **kwargs):
        calls.append(len(viewmats))
        return render(viewmats, *args, **kwargs)

    monkeypatch.setattr(model, "render", recording_render)
    frames = render_trajectory(model, poses, K, 24, 20, batch_size=2)
    assert calls == []  # lazy: nothing rendered until frames are read
    frames = list(frames)
    assert calls == [2, 2, 1]
    assert len(frames) == 5 and all(f.dtype == np.uint8 and f.shape == (20, 24, 3) for f in frames)
    # The frame of a training camera's pose is that camera's render.
    viewmats = torch.as_tensor(np.asarray(views.with_format("numpy")["world_to_camera"][:5]), dtype=torch.float32)
    with torch.no_grad():
        expected, _, _ = render(viewmats, torch.as_tensor(K, dtype=torch.float32).expand(5, 3, 3), 24, 20)
    expected = (expected.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    assert np.abs(np.stack(frames).astype(int) - expected.astype(int)).max() <= 1
    assert np.stack(frames).std() > 0
    white = next(render_trajectory(model, ellipse_path(poses, 3)[[0]], K, 24, 20, background=(1.0, 1.0, 1.0)))
    black = next(render_trajectory(model, ellipse_path(poses, 3)[[0]], K, 24, 20))
    assert (white.astype(int) >= black.astype(int)).all() and (white != black).any()


def test_write_gif_writes_every_frame_and_the_pngs(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (10, 14, 3), dtype=np.uint8) for _ in range(7)]
    count = write_gif(iter(frames), tmp_path / "out" / "path.gif", fps=25, frames_dir=tmp_path / "frames")
    assert count == 7
    with Image.open(tmp_path / "out" / "path.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 7 and gif.size == (14, 10)
        assert gif.info["duration"] == 40 and gif.info["loop"] == 0
    pngs = sorted((tmp_path / "frames").glob("*.png"))
    assert [p.name for p in pngs] == [f"frame_{i:05d}.png" for i in range(7)]
    for png, frame in zip(pngs, frames):
        np.testing.assert_array_equal(np.asarray(Image.open(png)), frame)


@pytest.mark.parametrize("fps", [30, 24, 15])
def test_write_gif_plays_at_the_stated_rate(tmp_path, fps):
    # A GIF's delays are whole hundredths: a constant round(1000 / fps) ms played 30 fps at 33.3.
    frames = [np.full((4, 4, 3), i, np.uint8) for i in range(3 * fps)]
    write_gif(frames, tmp_path / "rate.gif", fps=fps)
    with Image.open(tmp_path / "rate.gif") as gif:
        durations = []
        for index in range(gif.n_frames):
            gif.seek(index)
            durations.append(gif.info["duration"])
    assert len(durations) == 3 * fps and sum(durations) == 3000
    assert max(durations) - min(durations) <= 10


def test_write_gif_refuses_a_rate_browsers_slow_down(tmp_path):
    frames = [np.zeros((4, 4, 3), np.uint8)] * 2
    write_gif(frames, tmp_path / "fifty.gif", fps=50)
    for fps in (60, 0, float("nan")):
        with pytest.raises(ValueError, match=r"fps must be in \(0, 50\]"):
            write_gif(frames, tmp_path / "fast.gif", fps=fps)
    assert not (tmp_path / "fast.gif").exists()


def test_write_gif_refuses_bad_frames_and_keeps_the_earlier_file(tmp_path):
    path = tmp_path / "path.gif"
    good = [np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)]
    write_gif(good, path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="no frames"):
        write_gif([], path)
    with pytest.raises(ValueError, match=r"frame 1 is \(8, 9, 3\), frame 0 is \(8, 8, 3\)"):
        write_gif([good[0], np.zeros((8, 9, 3), np.uint8)], path)
    with pytest.raises(ValueError, match="frame 0 must be uint8"):
        write_gif([np.zeros((8, 8, 3), np.float32)], path)
    assert path.read_bytes() == before
    assert sorted(tmp_path.iterdir()) == [path]


def test_bad_inputs_are_named(scene, model):
    poses = views_camera_to_world(scene.views["train"])
    K = np.asarray(scene.views["train"][0]["K"])
    with pytest.raises(ValueError, match="interpolated_path needs at least 2 camera pose"):
        interpolated_path(poses[:1], 10)
    with pytest.raises(ValueError, match="ellipse_path needs at least 2 camera pose"):
        ellipse_path(poses[:1], 10)
    with pytest.raises(ValueError, match="render_trajectory needs at least 1 camera pose"):
        render_trajectory(model, poses[:0], K, 24, 20)
    bad = poses.copy()
    bad[3, 0, 3] = np.nan
    for build in (interpolated_path, ellipse_path):
        with pytest.raises(ValueError, match="pose 3 contains NaN or infinite"):
            build(bad, 10)
    with pytest.raises(ValueError, match="pose 3 contains NaN or infinite"):
        render_trajectory(model, bad, K, 24, 20)
    for frames in (0, -3, 2.5):
        for build in (interpolated_path, ellipse_path):
            with pytest.raises(ValueError, match="num_frames must be a positive integer"):
                build(poses, frames)
    with pytest.raises(ValueError, match=r"K must be a \[3, 3\] intrinsics matrix, got shape \(4, 4\)"):
        render_trajectory(model, poses, np.eye(4), 24, 20)
    with pytest.raises(ValueError, match="poses must be camera-to-world"):
        render_trajectory(model, poses[0], K, 24, 20)
    with pytest.raises(ValueError, match="width must be a positive integer"):
        render_trajectory(model, poses, K, 0, 20)
    with pytest.raises(ValueError, match="camera path kind must be one of"):
        camera_path(scene.views["train"], "spiral", 10)
    with pytest.raises(ValueError, match="every training pose is the same"):
        interpolated_path(np.stack([poses[0]] * 3), 10)


def test_ellipse_refuses_a_forward_facing_capture():
    # Parallel optical axes (an LLFF-style capture) look at no point to orbit.
    poses = np.stack([look_at_camera_to_world((x, 0.0, 0.0), (x, 5.0, 0.0)) for x in (-1.0, 0.0, 1.0)])
    with pytest.raises(ValueError, match="optical axes are parallel.*interpolated_path"):
        ellipse_path(poses, 10)
    assert_camera_poses(interpolated_path(poses, 10), 10)


def test_ellipse_refuses_a_forward_facing_capture_that_turns_a_little():
    # Axes turned a few degrees each way meet nearest behind the cameras: an orbit about that
    # point looked away from the scene half the time.
    rng = np.random.default_rng(0)
    eyes = [(x, -4.0, z) for x in np.linspace(-0.6, 0.6, 5) for z in np.linspace(0.6, 1.4, 4)]
    targets = [np.array([x, 0.0, z]) + rng.normal(0.0, 0.15, 3) for x, _, z in eyes]
    poses = np.stack([look_at_camera_to_world(eye, target) for eye, target in zip(eyes, targets)])
    with pytest.raises(ValueError, match="behind 20 of the 20 cameras.*interpolated_path"):
        ellipse_path(poses, 10)


@pytest.mark.parametrize("turned", [False, True], ids=["z-up", "turned-world"])
def test_ellipse_of_a_one_sided_capture_keeps_the_horizon_level(turned):
    # Cameras on a half circle, looking down at the object: their mean up vector leans 13 degrees
    # toward the side they stand on, but their right axes stay horizontal.
    poses = arc_poses(0, 180, 9)
    up = np.array([0.0, 0.0, 1.0])
    if turned:
        poses, up = moved(poses, rigid(seed=3, scale=20.0)), rigid(seed=3)[:3, :3] @ up
    path = ellipse_path(poses, 16)
    np.testing.assert_allclose(path[:, :3, 0] @ up, 0.0, atol=1e-9)
    heights = (path[:, :3, 3] - focus_point(poses)) @ up
    np.testing.assert_allclose(heights, heights[0], atol=1e-9 * (20 if turned else 1))


def run_example(monkeypatch, out, *flags):
    monkeypatch.setattr(sys, "argv", [
        str(SCRIPT), "--procedural_resolution", "16", "--procedural_num_train", "3", "--procedural_num_test", "1",
        "--sh_degree", "0", "--disable_tqdm", "True", "--eval_render_images", "0", "--max_steps", "2",
        "--report_to", "none", "--output_dir", str(out), *flags,
    ])
    runpy.run_path(str(SCRIPT), run_name="__main__")


def test_example_writes_the_trajectory_gif(tmp_path, monkeypatch):
    run_example(monkeypatch, tmp_path / "ellipse", "--trajectory_frames", "6", "--trajectory_size", "12")
    with Image.open(tmp_path / "ellipse" / "trajectory.gif") as gif:
        assert gif.n_frames == 6 and gif.size == (12, 12)
    run_example(monkeypatch, tmp_path / "interpolated", "--render_trajectory", "interpolated",
                "--trajectory_frames", "5")
    with Image.open(tmp_path / "interpolated" / "trajectory.gif") as gif:
        assert gif.n_frames == 5 and gif.size == (16, 16)
    run_example(monkeypatch, tmp_path / "none", "--render_trajectory", "none")
    assert (tmp_path / "none" / "model.safetensors").is_file()
    assert not (tmp_path / "none" / "trajectory.gif").exists()


def test_a_run_without_a_video_removes_an_earlier_runs_video(tmp_path, monkeypatch, caplog):
    # --render_trajectory none left it beside this run's model and results, and it passed for this run's
    out = tmp_path / "run"
    run_example(monkeypatch, out, "--trajectory_frames", "2")
    assert (out / "trajectory.gif").is_file()
    caplog.set_level("INFO")
    run_example(monkeypatch, out, "--render_trajectory", "none", "--overwrite_output_dir")
    assert not (out / "trajectory.gif").exists()
    assert f"removed {out / 'trajectory.gif'}: an earlier run's video, not this run's" in caplog.text
    evaluation = tmp_path / "eval"  # an evaluation's rerun into its own folder
    run_example(monkeypatch, evaluation, "--do_train", "False", "--model_name_or_path", str(out),
                "--trajectory_frames", "2")
    assert (evaluation / "trajectory.gif").is_file()
    run_example(monkeypatch, evaluation, "--do_train", "False", "--model_name_or_path", str(out),
                "--render_trajectory", "none")
    assert not (evaluation / "trajectory.gif").exists()


def test_example_refuses_a_path_the_scene_cannot_give_before_training(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="--render_trajectory ellipse: ellipse_path needs at least 2 .*none"):
        run_example(monkeypatch, tmp_path / "one", "--procedural_num_train", "1")
    assert not (tmp_path / "one" / "model.safetensors").exists()


def test_path_intrinsics_scale_the_first_view_down_never_up():
    from hf_eff.splat import path_intrinsics, views_dataset

    K = pinhole_intrinsics(640, 480, 60.0)
    views = views_dataset([np.zeros((480, 640, 3), np.uint8)], [K], [np.eye(4)])
    scaled, width, height = path_intrinsics(views, 320)
    assert (width, height) == (320, 240)
    np.testing.assert_allclose(scaled, pinhole_intrinsics(320, 240, 60.0), rtol=1e-6)
    assert path_intrinsics(views, 1000)[1:] == path_intrinsics(views)[1:] == (640, 480)


def test_ellipse_of_a_capture_from_one_side_keeps_its_distance():
    # Cameras on a 60-degree arc: their offsets span little across the arc, but the orbit must
    # not pass next to the focus (the minor half-axis is at least half the major one).
    poses = arc_poses(-30, 30, 7)
    path = ellipse_path(poses, 24)
    horizontal = np.linalg.norm(path[:, :2, 3], axis=1)
    assert horizontal.min() >= 0.5 * horizontal.max() - 1e-9
    assert horizontal.min() > 1.0
