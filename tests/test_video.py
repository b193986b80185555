"""VideoEncoder, the soundtrack of video files on the audio side, and the video digits.

Clips are tiny MP4 files written in the tests (a few frames of 16 x 24 pixels) whose
frame ``i`` is a flat grey of level ``10 * i``: a decoded frame says which frame it is,
so sampling is checked against timestamps worked out by hand and against PyAV
decoding every frame (the reference reader below).
"""

import pickle
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.io import wavfile
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils import estimator_checks as ec

from skmm.datasets import load_video_digits
from skmm.datasets._video_digits import write_mp4
from skmm.encoders import (
    AudioEncoder,
    AudioFeatures,
    ImageEncoder,
    VideoEncoder,
    _video_io,
)
from skmm.encoders._audio import read_audio
from skmm.encoders._video_io import read_video
from skmm.fusion import MultimodalFuser

av = pytest.importorskip("av")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN_SPEAKERS = ["george", "jackson", "nicolas", "theo"]


def flat_clip(n, height=16, width=24):
    """Frames whose grey level ``10 * i`` says which frame ``i`` they are."""
    return np.stack([np.full((height, width), 10 * i, np.uint8) for i in range(n)])


def frame_index(frame):
    return int(round(float(np.mean(frame)) / 10))


def reference_frames(path, n_frames):
    """Every frame decoded by PyAV, and the one shown at each sampled instant.

    Written apart from the encoder's reader: all frames in memory, the instants
    from the video stream's span, the last frame stamped at or before each.
    """
    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = [
            (f.time, f.to_ndarray(format="rgb24")) for f in container.decode(stream)
        ]
        start = float(stream.start_time * stream.time_base)
        end = start + float(stream.duration * stream.time_base)
    times = np.array([t for t, _ in frames])
    instants = start + (np.arange(n_frames) + 0.5) * (end - start) / n_frames
    picked = [max(np.searchsorted(times, t + 1e-6) - 1, 0) for t in instants]
    return [frames[i][1] for i in picked]


class _Counting:
    """A container that records its seeks."""

    def __init__(self, container, seeks):
        self._container, self._seeks = container, seeks

    def seek(self, *args, **kwargs):
        self._seeks.append(args)
        return self._container.seek(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._container, name)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="module")
def clip20(clip_dir):
    """20 frames at 10 fps (2 s), with a soundtrack."""
    path = str(clip_dir / "clip20.mp4")
    wave = (np.arange(12000) % 200 - 100).astype(np.int16) * 100
    write_mp4(path, flat_clip(20), 10, audio=wave)
    return path


@pytest.fixture(scope="module")
def digits_clips(clip_dir):
    """Eight small clips, with soundtracks, of two kinds (dark and bright)."""
    rng = np.random.default_rng(0)
    paths, waves = [], []
    for i in range(8):
        level = 40 if i % 2 == 0 else 200
        frames = rng.integers(0, 40, (6, 16, 16)).astype(np.uint8) + level - 20
        wave = (rng.normal(0, 2000, 3000 + 400 * i)).astype(np.int16)
        paths.append(str(clip_dir / f"d{i}.mp4"))
        write_mp4(paths[-1], frames, 10, audio=wave)
        waves.append(wave)
    return paths, waves


def tiny(**params):
    defaults = dict(backbone="cnn", max_epochs=0, n_frames=4, device="cpu")
    return VideoEncoder(**{**defaults, "random_state": 0, **params})


# -- sampling ------------------------------------------------------------------------
def test_uniform_sampling_takes_the_frame_shown_at_each_span_middle(clip20):
    # 2 s in 4 spans: instants 0.25, 0.75, 1.25, 1.75 s, frames every 0.1 s.
    assert [frame_index(f) for f in read_video(clip20, 4)] == [2, 7, 12, 17]
    # One frame: the middle one (1.0 s is frame 10, stamped exactly then).
    assert [frame_index(f) for f in read_video(clip20, 1)] == [10]
    # More frames than the clip has: frames repeat, in order.
    many = [frame_index(f) for f in read_video(clip20, 30)]
    assert many == sorted(many) and len(set(many)) == 20
    for ours, theirs in zip(read_video(clip20, 7), reference_frames(clip20, 7)):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize(
    "suffix, codec",
    [(".mov", "libx264"), (".mkv", "libx264"), (".webm", "libvpx"), (".avi", "mpeg4")],
)
def test_containers_and_codecs(clip_dir, suffix, codec):
    path = str(clip_dir / f"container{suffix}")
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 24, 16, "yuv420p"
        stream.bit_rate = 2_000_000
        for array in flat_clip(20):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, "gray")))
        container.mux(stream.encode())
    assert [frame_index(f) for f in read_video(path, 4)] == [2, 7, 12, 17]


def test_fps_sampling_takes_frames_from_the_start(clip20):
    # 0, 1/3, 2/3, 1, 4/3, 5/3 s: at most n_frames, and only within the clip.
    sampled = read_video(clip20, 8, fps=3)
    assert [frame_index(f) for f in sampled] == [0, 3, 6, 10, 13, 16]
    assert len(read_video(clip20, 4, fps=3)) == 4


def test_a_stream_that_starts_late_on_a_90khz_clock(clip_dir):
    # MPEG-TS: the video starts at 1/7 s and its stamps are 90 kHz ticks, which
    # hold no exact 1/7 s: each frame is still found at its own instant.
    path = str(clip_dir / "late.ts")
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=7)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        for array in flat_clip(20, 16, 16):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, "gray")))
        container.mux(stream.encode())
    with av.open(path) as container:
        assert container.streams.video[0].start_time > 0
    assert [frame_index(f) for f in read_video(path, 20, fps=7)] == list(range(20))


def test_variable_frame_rate_follows_timestamps(clip_dir):
    path = str(clip_dir / "vfr.mp4")
    times = [0.0, 0.1, 0.15, 0.6, 0.65, 0.9, 1.6]
    write_mp4(path, flat_clip(7), 10, times=times)
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert [f.time for f in container.decode(stream)] == times
        end = float(stream.duration * stream.time_base)
    instants = (np.arange(5) + 0.5) * end / 5
    expected = [int(np.searchsorted(times, t, side="right")) - 1 for t in instants]
    assert [frame_index(f) for f in read_video(path, 5)] == expected
    # A constant-rate reading (frame i at i / 10 s) would pick other frames.
    assert expected != [min(int(t * 10), 6) for t in instants]


def test_a_long_clip_is_sampled_by_seeking_as_by_decoding_it_all(clip_dir, monkeypatch):
    path = str(clip_dir / "long.mp4")
    n = 300  # 60 s at 5 fps, a keyframe every second
    frames = np.stack([np.full((16, 16), i % 25 * 10, np.uint8) for i in range(n)])
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=5)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10", "g": "5", "keyint_min": "5", "threads": "1"}
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, "gray")))
        container.mux(stream.encode())
    seeks = []
    init = _video_io._ClipReader.__init__

    def counting(self, container, *args):
        init(self, _Counting(container, seeks), *args)

    monkeypatch.setattr(_video_io._ClipReader, "__init__", counting)
    ours = read_video(path, 6)
    # Instants 5, 15... 55 s; keyframes 1 s apart, known once the first two are
    # decoded: every instant is reached by a seek.
    assert len(seeks) == 6
    for a, b in zip(ours, reference_frames(path, 6)):
        np.testing.assert_array_equal(a, b)
    # Instants (k + 0.5) * 10 s: frames 25, 75, ... (their level is i % 25 * 10).
    assert [frame_index(f) for f in ours] == [0] * 6
    shifted = read_video(path, 6, fps=0.5)  # 0, 2, 4... s: frames 0, 10, 20...
    assert [frame_index(f) for f in shifted] == [0, 10, 20, 5, 15, 0]


def test_arrays_are_sampled_by_frame_index():
    clip = flat_clip(10)
    assert [frame_index(f) for f in read_video(clip, 4)] == [1, 3, 6, 8]
    assert [frame_index(f) for f in read_video(clip[..., None], 3, fps=2)] == [0, 1, 2]
    assert [frame_index(f) for f in read_video(list(clip[:2]), 4)] == [0, 0, 1, 1]


def test_frames_shrink_while_decoded_but_keep_the_input_size(clip_dir):
    path = str(clip_dir / "big.mp4")
    write_mp4(path, np.zeros((3, 96, 160), np.uint8), 10)
    assert read_video(path, 2)[0].shape == (96, 160, 3)
    # Both sides at least (20, 30): shrunk by 3 (96 // 20 = 4, 160 // 30 = 5).
    assert read_video(path, 2, min_size=(20, 30))[0].shape == (24, 40, 3)
    assert read_video(path, 2, min_size=(60, 30))[0].shape == (96, 160, 3)


# -- the encoder ---------------------------------------------------------------------
def test_mean_and_max_pooling_match_the_image_encoder_on_the_frames(digits_clips):
    paths, _ = digits_clips
    frames = [f for p in paths for f in reference_frames(p, 4)]
    image = ImageEncoder("cnn", max_epochs=0, random_state=0, device="cpu")
    per_frame = image.fit(np.stack(frames)).transform(np.stack(frames))
    per_frame = per_frame.reshape(len(paths), 4, -1)
    mean = tiny(pooling="mean").fit_transform(paths)
    np.testing.assert_allclose(mean, per_frame.mean(1), rtol=1e-5, atol=1e-6)
    maximum = tiny(pooling="max").fit_transform(paths)
    np.testing.assert_allclose(maximum, per_frame.max(1), rtol=1e-5, atol=1e-6)


def test_items_of_every_form_and_missing_rows(digits_clips, tmp_path):
    paths, _ = digits_clips
    frames = np.stack(reference_frames(paths[0], 4))
    with open(paths[0], "rb") as f:
        data = f.read()
    enc = tiny(pooling="mean").fit(paths)
    out = enc.transform(pd.Series([paths[0], data, frames, None, np.nan], name="video"))
    np.testing.assert_allclose(out[1], out[0], rtol=1e-6)
    # The same frames as an array (taken one by one: 4 sampled of 4).
    np.testing.assert_allclose(out[2], out[0], rtol=1e-5, atol=1e-6)
    assert np.isnan(out[3:]).all() and np.isfinite(out[:3]).all()
    # A batch of gray clips (n, T, H, W) and its RGB form (n, T, H, W, 3).
    gray = np.stack([flat_clip(5, 16, 16) + i for i in range(3)])
    enc = tiny(pooling="mean").fit(gray)
    np.testing.assert_allclose(
        enc.transform(gray), enc.transform(list(gray)), rtol=1e-6, atol=1e-7
    )
    assert enc.frame_encoder_.n_channels_ == 1
    rgb = np.repeat(gray[..., None], 3, axis=4)
    assert tiny().fit(rgb).frame_encoder_.n_channels_ == 3


def test_fps_clips_of_different_lengths_pool_their_own_frames(clip_dir):
    long, short = str(clip_dir / "f_long.mp4"), str(clip_dir / "f_short.mp4")
    write_mp4(long, flat_clip(12, 16, 16), 10)
    write_mp4(short, flat_clip(3, 16, 16), 10)
    enc = tiny(n_frames=6, fps=5, pooling="mean").fit([long, short])
    batch = enc._load(enc._check_input([long, short], reset=False), np.arange(2))
    present = ~torch.isnan(batch.flatten(2)[..., 0])
    assert present.sum(1).tolist() == [6, 2]  # 0..1.0 s; 0 and 0.2 s of 0.3 s
    # The short clip alone, or beside a long one: the same features.
    together = enc.transform([long, short])
    np.testing.assert_allclose(together[1], enc.transform([short])[0], rtol=1e-5)
    # Its features: the mean over its 2 frames alone (the padding counts for nothing).
    frames = np.stack(read_video(short, 6, fps=5))
    image = enc.frame_encoder_
    with torch.no_grad():
        per_frame = enc.module_.frames(
            image._load(image._check_input(frames, reset=False), np.arange(2))
        )
    np.testing.assert_allclose(
        together[1], per_frame.mean(0).numpy(), rtol=1e-5, atol=1e-6
    )


def test_gru_learns_the_direction_of_motion_that_pooling_cannot():
    # A bright bar moving left or right: the same frames in the two orders.
    rng = np.random.default_rng(0)

    def clips(n):
        out, labels = [], []
        for _ in range(n):
            frames = np.zeros((5, 10, 10), np.uint8)
            for t in range(5):
                frames[t, :, 2 * t : 2 * t + 2] = 255
            frames = frames + rng.integers(0, 30, frames.shape).astype(np.uint8)
            right = rng.random() < 0.5
            out.append(frames if right else frames[::-1])
            labels.append(int(right))
        return np.stack(out), np.array(labels)

    X, y = clips(48)
    X_test, y_test = clips(40)
    scores = {}
    for pooling in ("mean", "gru"):
        enc = tiny(
            n_frames=5, pooling=pooling, max_epochs=8, lr=3e-3, random_state=0
        ).fit(X, y)
        head = make_pipeline(StandardScaler(), SVC()).fit(enc.transform(X), y)
        scores[pooling] = head.score(enc.transform(X_test), y_test)
    assert scores["gru"] >= 0.9  # measured 0.95
    assert scores["mean"] <= 0.6  # measured 0.45: the mean forgets the order


def test_pooling_choices_and_their_errors(digits_clips):
    paths, _ = digits_clips
    y = [0, 1] * 4
    assert tiny().fit(paths).pooling_ == "mean"
    trained = tiny(max_epochs=1).fit(paths, y)
    assert trained.pooling_ == "gru" and trained.transform(paths).shape == (8, 256)
    with pytest.raises(ValueError, match=r"pooling='gru' .* needs max_epochs > 0"):
        tiny(pooling="gru").fit(paths)
    with pytest.raises(ValueError, match="requires y to be passed"):
        tiny(max_epochs=1).fit(paths)


def test_train_layers_head_trains_only_the_gru(digits_clips):
    paths, _ = digits_clips
    y = [0, 1] * 4
    start = tiny(max_epochs=0, pooling="mean").fit(paths).module_.frames
    enc = tiny(max_epochs=2, train_layers="head", pooling="gru").fit(paths, y)
    for a, b in zip(
        start.state_dict().values(), enc.module_.frames.state_dict().values()
    ):
        torch.testing.assert_close(a, b)  # frames frozen, batch-norm statistics too
    fresh = tiny(max_epochs=2, pooling="gru").fit(paths, y)
    changed = [
        not torch.equal(a, b)
        for a, b in zip(
            start.state_dict().values(), fresh.module_.frames.state_dict().values()
        )
    ]
    assert any(changed)


def test_augmentation_moves_all_frames_of_a_clip_alike():
    clip = torch.zeros(2, 3, 1, 8, 8)
    clip[:, :, :, 2:6, 1:3] = 1.0
    clip[1, 2] = torch.nan  # a frame past the second clip's end
    enc = tiny(augment="default")
    out = enc._augment(clip, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[0, 0], out[0, 1])
    torch.testing.assert_close(out[1, 0], out[1, 1])
    assert not torch.equal(out[0, 0], clip[0, 0])
    assert torch.isnan(out[1, 2]).all() and not torch.isnan(out[1, :2]).any()


def test_pickle_clone_not_fitted_and_fit_transform(digits_clips):
    paths, _ = digits_clips
    enc = tiny(max_epochs=1, random_state=0)
    with pytest.raises(NotFittedError):
        enc.transform(paths)
    fitted = clone(enc).fit(paths, [0, 1] * 4)
    out = fitted.transform(paths)
    np.testing.assert_array_equal(clone(enc).fit_transform(paths, [0, 1] * 4), out)
    loaded = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(loaded.transform(paths), out)
    assert "module_" not in vars(clone(fitted))
    names = fitted.get_feature_names_out()
    assert names[0] == "videoencoder0" and len(names) == 256


def test_failed_fit_leaves_the_encoder_as_it_was(digits_clips, tmp_path):
    paths, _ = digits_clips
    enc = tiny().fit(paths)
    before = enc.transform(paths)
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="row 2"):
        enc.fit(paths[:2] + [str(tmp_path / "bad.mp4")])
    np.testing.assert_array_equal(enc.transform(paths), before)


def test_the_cache_keys_a_clip_like_a_file(digits_clips, tmp_path, monkeypatch):
    paths, _ = digits_clips
    decoded = []
    original = VideoEncoder._load

    def spy(self, column, rows):
        decoded.extend(rows)
        return original(self, column, rows)

    monkeypatch.setattr(VideoEncoder, "_load", spy)
    enc = tiny(memory=tmp_path / "cache").fit(paths)
    first = enc.transform(paths)
    assert len(decoded) == 8
    decoded.clear()
    np.testing.assert_array_equal(enc.transform(paths[::-1]), first[::-1])
    assert decoded == []
    # Another sampling of the clips is another encoder: nothing served stale.
    again = tiny(memory=tmp_path / "cache", n_frames=2).fit(paths)
    again.transform(paths)
    assert len(decoded) == 8
    # A module backbone with a weights file: a clone (as a fuser makes) finds the
    # entries of the original.
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    torch.save(net.state_dict(), tmp_path / "net.pt")
    enc = tiny(backbone=net, weights=tmp_path / "net.pt", memory=tmp_path / "cache")
    first = enc.fit(paths).transform(paths)
    decoded.clear()
    fuser = MultimodalFuser([("frames", enc, "video")], normalize=None)
    np.testing.assert_array_equal(
        fuser.fit_transform(pd.DataFrame({"video": paths})), first
    )
    assert decoded == []


def test_dask_transform_matches_in_memory(digits_clips):
    dd = pytest.importorskip("dask.dataframe")
    paths, _ = digits_clips
    X = pd.DataFrame({"video": paths})
    enc = tiny().fit(X)
    lazy = enc.transform(dd.from_pandas(X, npartitions=3))
    np.testing.assert_allclose(
        lazy.compute().to_numpy(), enc.transform(X), rtol=1e-6, atol=1e-7
    )


def test_the_fuser_reads_frames_and_soundtrack_from_one_column(digits_clips):
    paths, _ = digits_clips
    X = pd.DataFrame({"video": paths + [None]})
    fuser = MultimodalFuser(
        [
            ("frames", tiny(), "video"),
            ("sound", AudioFeatures(sample_rate=8000, n_mfcc=8), "video"),
        ],
        normalize=None,
        missing="zero",
    )
    out = fuser.fit_transform(X)
    assert out.shape == (9, 128 + 16) and np.isfinite(out).all()
    frames, sound = fuser.output_indices_["frames"], fuser.output_indices_["sound"]
    np.testing.assert_allclose(
        out[:8, frames], tiny().fit(paths).transform(paths), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(
        out[:8, sound], AudioFeatures(sample_rate=8000, n_mfcc=8).fit_transform(paths)
    )


def test_the_fuser_takes_a_clip_without_soundtrack_as_missing_sound(
    digits_clips, tmp_path
):
    paths, _ = digits_clips
    silent = str(tmp_path / "silent.mp4")
    write_mp4(silent, flat_clip(4, 16, 16), 10)
    X = pd.DataFrame({"video": paths + [silent]})
    fuser = MultimodalFuser(
        [
            ("frames", tiny(), "video"),
            ("sound", AudioFeatures(sample_rate=8000, n_mfcc=8), "video"),
        ],
        missing="zero",
    )
    with pytest.warns(UserWarning, match="have no audio stream"):
        out = fuser.fit_transform(X)
    # The same as a None cell in a column of its own: filled by the missing= policy.
    X_none = X.assign(sound=paths + [None])
    reference = MultimodalFuser(
        [
            ("frames", tiny(), "video"),
            ("sound", AudioFeatures(sample_rate=8000, n_mfcc=8), "sound"),
        ],
        missing="zero",
    ).fit_transform(X_none)
    np.testing.assert_allclose(out, reference, rtol=1e-5, atol=1e-6)
    with pytest.warns(UserWarning, match="have no audio stream"):
        again = fuser.transform(X)
    np.testing.assert_allclose(again, out, rtol=1e-5, atol=1e-6)


def test_a_net_trains_video_and_sound_towers_on_one_column(digits_clips, tmp_path):
    from skmm.nn import MultimodalNetClassifier

    paths, _ = digits_clips
    silent = str(tmp_path / "silent.mp4")
    write_mp4(silent, flat_clip(4, 16, 16), 10)
    X = pd.DataFrame({"video": paths + [silent]})
    net = MultimodalNetClassifier(
        [
            ("frames", tiny(max_epochs=1, pooling="gru"), "video"),
            ("sound", AudioEncoder(8000, max_epochs=1, device="cpu"), "video"),
        ],
        max_epochs=2,
        batch_size=4,
        random_state=0,
        device="cpu",
    )
    # The clip without soundtrack: a missing sound, masked in the net.
    with pytest.warns(UserWarning, match="have no audio stream"):
        net.fit(X, [0, 1] * 4 + [0])
    with pytest.warns(UserWarning, match="have no audio stream"):
        proba = net.predict_proba(X)
    assert proba.shape == (9, 2) and np.isfinite(proba).all()


def moving_bars(n, seed):
    """Clips of a bright bar (4 pixels wide) crossing 5 frames of 10 x 10 pixels,
    rightwards on even rows and leftwards on odd ones: the same frames in the two
    orders, so only a temporal model over the frames tells the direction."""
    rng = np.random.default_rng(seed)
    clips = np.empty(n, dtype=object)
    for i in range(n):
        frames = np.zeros((5, 10, 10), np.uint8)
        for t in range(5):
            frames[t, :, 2 * t : 2 * t + 4] = 255
        frames = frames + rng.integers(0, 30, frames.shape).astype(np.uint8)
        clips[i] = frames if i % 2 == 0 else frames[::-1].copy()
    return clips, (np.arange(n) % 2 == 0).astype(int)


def test_a_net_needs_its_video_and_numeric_towers_together(record_measure):
    from skmm.nn import MultimodalNetClassifier

    def data(n, seed):
        clips, right = moving_bars(n, seed)
        x = np.random.default_rng(seed + 10).normal(size=n)
        # Four classes: the direction of motion and the sign of x. Either tower alone
        # reaches at most one half.
        return pd.DataFrame({"clip": clips, "x": x}), 2 * right + (x > 0)

    X, y = data(64, 0)
    X_test, y_test = data(60, 1)
    net = MultimodalNetClassifier(
        [
            # The GRU over the frames trains inside the net (measured with
            # pooling="mean" in its place: 0.37, the direction lost).
            ("clip", tiny(n_frames=5, pooling="gru", max_epochs=1), "clip"),
            ("x", "passthrough", ["x"]),
        ],
        max_epochs=12,
        batch_size=16,
        lr=3e-3,
        random_state=0,
        device="cpu",
    ).fit(X, y)
    assert net.named_encoders_["clip"].module_.pooling == "gru"
    # Measured 0.88.
    record_measure("direction and sign, 4 classes", net.score(X_test, y_test), 0.75)


def test_the_matcher_pairs_clips_with_captions(record_measure):
    from skmm.encoders import TextEncoder
    from skmm.nn import MultimodalMatcher

    def data(n, seed):
        clips, right = moving_bars(n, seed)
        captions = np.where(right, "a bar moving right", "a bar moving left")
        return pd.DataFrame({"clip": clips, "caption": captions})

    matcher = MultimodalMatcher(
        [
            ("video", tiny(n_frames=5, pooling="gru", max_epochs=1), "clip"),
            ("text", TextEncoder("gru", embedding_dim=8, hidden_size=8), "caption"),
        ],
        embedding_dim=8,
        batch_size=16,
        max_epochs=12,
        early_stopping=False,
        lr=3e-3,
        random_state=0,
        device="cpu",
    ).fit(data(64, 0))
    X = data(32, 1)
    shifted = X.assign(caption=np.roll(X["caption"].to_numpy(), 1))
    wins = matcher.decision_function(X) > matcher.decision_function(shifted)
    # Measured 1.0 (0.34 with pooling="mean": the frames alone say no direction).
    record_measure("own caption beats the other one", wins.mean(), 0.9)
    captions = np.unique(X["caption"])
    best = matcher.kneighbors(X["clip"], captions, n_neighbors=1)[:, 0]
    right = captions[best] == X["caption"]
    record_measure("right caption first", right.mean(), 0.9)  # measured 1.0


def test_streamed_training_equals_training_in_memory(digits_clips, monkeypatch):
    # Clips are the items whose decoded size makes fit stream them: decoded per
    # batch, in worker processes, the same weights as all at once.
    import skmm.training._sources as sources

    paths, _ = digits_clips
    y = [0, 1] * 4
    params = dict(max_epochs=2, batch_size=4, augment="default")
    in_memory = tiny(**params).fit(paths, y)
    monkeypatch.setattr(sources, "IN_MEMORY_BYTES", 0)
    streamed = tiny(num_workers=2, **params).fit(paths, y)
    a, b = in_memory.module_.state_dict(), streamed.module_.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert streamed.loss_curve_ == in_memory.loss_curve_


def test_partial_fit_continues_training(digits_clips):
    paths, _ = digits_clips
    enc = tiny(max_epochs=1, random_state=0).partial_fit(
        paths, [0, 1] * 4, classes=[0, 1]
    )
    first = enc.transform(paths)
    enc.partial_fit(paths, [0, 1] * 4)
    assert enc.n_iter_ == 2 and not np.allclose(enc.transform(paths), first)


# -- the soundtrack ------------------------------------------------------------------
def test_soundtrack_features_equal_the_wav_ones(digits_clips, tmp_path):
    paths, waves = digits_clips
    wavs = []
    for i, wave in enumerate(waves):
        wavs.append(str(tmp_path / f"{i}.wav"))
        wavfile.write(wavs[-1], 8000, wave)
    np.testing.assert_array_equal(read_audio(paths[0], 8000), read_audio(wavs[0], 8000))
    for encoder in (
        AudioFeatures(sample_rate=8000),
        AudioFeatures(sample_rate=16000),  # resampled as the WAV is
        AudioEncoder(sample_rate=8000, max_epochs=0, device="cpu", random_state=0),
    ):
        encoder.fit(wavs)
        np.testing.assert_array_equal(encoder.transform(paths), encoder.transform(wavs))
    with open(paths[1], "rb") as f:  # the bytes of a video file
        np.testing.assert_array_equal(read_audio(f.read(), 8000), waves[1] / 32768)


def test_a_stereo_44k_soundtrack_is_mixed_down_and_resampled(tmp_path):
    rate = 44100
    t = np.arange(rate // 2) / rate
    left = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    right = (0.25 * np.sin(2 * np.pi * 660 * t) * 32767).astype(np.int16)
    path = str(tmp_path / "stereo.mkv")
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        sound = container.add_stream("pcm_s16le", rate=rate, layout="stereo")
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((16, 16), np.uint8), "gray")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        frame = av.AudioFrame.from_ndarray(
            np.stack([left, right]).T.reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = rate
        container.mux(sound.encode(frame))
        container.mux(sound.encode())
    wav = str(tmp_path / "stereo.wav")
    wavfile.write(wav, rate, np.stack([left, right], axis=1))
    np.testing.assert_array_equal(read_audio(path, 8000), read_audio(wav, 8000))


def test_without_pyav_video_items_name_the_extra(digits_clips, monkeypatch, tmp_path):
    paths, waves = digits_clips
    wav = str(tmp_path / "a.wav")
    wavfile.write(wav, 8000, waves[0])
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImportError, match=r"pip install 'skmm\[video\]'"):
        tiny().fit(paths)
    with pytest.raises(ImportError, match=r"'av' \(PyAV\).*skmm\[video\]"):
        AudioFeatures(sample_rate=8000).fit([wav]).transform(paths)
    # Arrays and WAV files need no PyAV.
    assert tiny().fit(np.zeros((2, 3, 8, 8), np.uint8)).transform(
        np.zeros((1, 3, 8, 8), np.uint8)
    ).shape == (1, 128)
    assert AudioFeatures(sample_rate=8000).fit([wav]).transform([wav]).shape == (1, 40)


# -- bad input -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def bad_files(clip_dir, clip20):
    folder = clip_dir / "bad"
    folder.mkdir()
    with open(clip20, "rb") as f:
        good = f.read()
    (folder / "random.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    (folder / "truncated.mp4").write_bytes(good[: len(good) // 2])
    (folder / "empty.mp4").write_bytes(b"")
    # An AVI whose video stream has no frame (beside a soundtrack).
    with av.open(str(folder / "no_frames.avi"), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        sound = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        container.mux(sound.encode(frame))
        container.mux(sound.encode())
    wavfile.write(folder / "speech.wav", 8000, np.zeros(800, np.int16))
    with av.open(str(folder / "audio_only.m4a"), "w") as container:
        sound = container.add_stream("alac", rate=8000, layout="mono")
        sound.codec_context.format = "s16p"
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), np.int16), format="s16p", layout="mono"
        )
        frame.sample_rate = 8000
        container.mux(sound.encode(frame))
        container.mux(sound.encode())
    from PIL import Image

    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "still.png")
    return folder


@pytest.mark.parametrize(
    "name, message",
    [
        ("random.mp4", r"cannot decode .*random\.mp4' \(not a container FFmpeg reads"),
        ("truncated.mp4", r"cannot decode .*truncated\.mp4' \(not a container"),
        ("empty.mp4", r"'.*empty\.mp4' is an empty file"),
        ("no_frames.avi", r"zero-length clip: '.*no_frames\.avi' holds no video"),
        ("speech.wav", r"'.*speech\.wav' has no video stream \(an audio file in a"),
        ("audio_only.m4a", r"'.*audio_only\.m4a' has no video stream \(an audio"),
        ("still.png", r"'.*still\.png' is a still image"),
        ("missing.mp4", r"file not found: .*missing\.mp4'"),
        (".", r"'.*' is a directory, not a video file"),
    ],
)
def test_bad_files_name_the_row_and_column(bad_files, clip20, name, message):
    X = pd.DataFrame({"video": [clip20, str(bad_files / name)]}, index=["ok", "bad"])
    with pytest.raises(ValueError, match=rf"column 'video', row 'bad': {message}"):
        tiny().fit(X)
    enc = tiny().fit(X.iloc[:1])
    with pytest.raises(ValueError, match=rf"column 'video', row 'bad': {message}"):
        enc.transform(X)


@pytest.mark.parametrize(
    "item, message",
    [
        (np.zeros((0, 8, 8)), r"zero-length clip: the array holds no frames"),
        (np.zeros((8, 8)), r"expected a clip array of shape \(T, H, W\)"),
        (np.full((3, 8, 8), np.nan), r"frame 0: image array contains NaN"),
        (np.full((3, 8, 8), 2.0), r"frame 0: image array has float values in \[0, 2\]"),
        (np.zeros((3, 8, 8, 2)), r"frame 0: expected an image array of shape"),
        (b"", r"empty bytes, not a video file"),
        (b"\x00\x01 not a video", r"cannot decode 14 bytes \(not a container FFmpeg"),
        (3.5j, r"expected a video file path, video file bytes or an array"),
    ],
)
def test_bad_items_name_the_row_and_column(item, message):
    X = pd.Series([np.zeros((3, 8, 8), np.uint8), item], name="video")
    with pytest.raises(ValueError, match=rf"column 'video', row 1: {message}"):
        tiny().fit(X)


def test_huge_frames_are_refused_before_decoding(clip20, monkeypatch):
    decoded = []
    monkeypatch.setattr(_video_io._ClipReader, "read", lambda *a: decoded.append(a))
    monkeypatch.setattr(_video_io, "MAX_FRAME_PIXELS", 24 * 16 - 1)
    with pytest.raises(
        ValueError,
        match=r"row 0: refusing to decode .*clip20\.mp4': its frames are 24 x 16 "
        r"pixels, more than the limit of 383",
    ):
        tiny().fit([clip20])
    assert decoded == []


def test_a_silent_clip_inside_a_cell_of_several_is_skipped(digits_clips, tmp_path):
    paths, _ = digits_clips
    silent = write_clip(tmp_path / "silent.avi", "mpeg4")
    cells = pd.Series([[paths[0], silent], [silent], paths[1]], name="a")
    features = AudioFeatures(sample_rate=8000).fit(paths)
    with pytest.warns(UserWarning, match=r"2 video file\(s\) .* rows 0, 1\."):
        out = features.transform(cells)
    # The cell's other sound alone; a cell of silent clips only is missing.
    np.testing.assert_allclose(out[[0, 2]], features.transform(paths[:2]), rtol=1e-6)
    assert np.isnan(out[1]).all()


def test_a_video_without_soundtrack_is_missing_but_a_broken_one_is_an_error(
    digits_clips, bad_files, clip_dir
):
    paths, _ = digits_clips
    silent = str(clip_dir / "silent.webm")
    with av.open(silent, "w") as container:
        stream = container.add_stream("libvpx", rate=10)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16), np.uint8), "gray")
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    features = AudioFeatures(sample_rate=8000).fit(paths)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = features.transform(pd.Series([paths[0], silent, None, silent], name="a"))
    assert np.isnan(out[1:]).all() and np.isfinite(out[0]).all()
    assert [str(w.message) for w in caught] == [
        "AudioFeatures: 2 video file(s) of column 'a' have no audio stream and are "
        "missing for the audio side (NaN features): rows 1, 3."
    ]
    broken = pd.Series([paths[0], str(bad_files / "random.mp4")], name="a")
    with pytest.raises(ValueError, match=r"column 'a', row 1: cannot decode"):
        features.transform(broken)
    with pytest.raises(ValueError, match=r"column 'a', row 1: cannot decode"):
        AudioEncoder(sample_rate=8000, max_epochs=0, device="cpu").fit(broken)


# -- video-native backbones ----------------------------------------------------------
def test_a_torchvision_video_model_from_a_weights_file(digits_clips, tmp_path):
    from torchvision.models import get_model, get_model_weights

    paths, _ = digits_clips
    torch.manual_seed(0)
    model = get_model("r3d_18", weights=None).eval()
    torch.save(model.state_dict(), tmp_path / "r3d.pt")
    enc = VideoEncoder(
        "r3d_18", weights=tmp_path / "r3d.pt", n_frames=4, device="cpu"
    ).fit(paths[:2])
    assert enc._frozen() and enc.n_frames_ == 4 and enc.frame_encoder_ is None
    # The reference: torchvision's own weights transform and model on the frames.
    transform = get_model_weights("r3d_18").DEFAULT.transforms()
    model.fc = torch.nn.Identity()
    clips = torch.stack(
        [
            transform(
                torch.from_numpy(np.stack(reference_frames(p, 4))).permute(0, 3, 1, 2)
            )
            for p in paths[:2]
        ]
    )
    with torch.no_grad():
        expected = model(clips).numpy()
    np.testing.assert_allclose(enc.transform(paths[:2]), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"'r3d_18' pools time itself"):
        VideoEncoder("r3d_18", pooling="mean", max_epochs=0, device="cpu").fit(
            paths[:1]
        )
    with pytest.raises(ValueError, match=r"takes clips of exactly 16 frames"):
        VideoEncoder("mvit_v2_s", n_frames=8, max_epochs=0, device="cpu").fit(paths[:1])


def test_a_huggingface_video_model_offline(digits_clips, tmp_path):
    transformers = pytest.importorskip("transformers")
    paths, _ = digits_clips
    config = transformers.VideoMAEConfig(
        image_size=16,
        patch_size=8,
        num_frames=4,
        tubelet_size=2,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
    )
    torch.manual_seed(0)
    model = transformers.VideoMAEModel(config).eval()
    processor = transformers.VideoMAEImageProcessor(
        size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}
    )
    model.save_pretrained(tmp_path / "videomae")
    processor.save_pretrained(tmp_path / "videomae")
    enc = VideoEncoder(f"hf:{tmp_path / 'videomae'}", device="cpu").fit(paths[:2])
    assert enc.n_frames_ == 4 and enc._frozen()
    # The reference: the model's own processor and a mean over its tokens.
    videos = [list(reference_frames(p, 4)) for p in paths[:2]]
    inputs = processor(videos, return_tensors="pt")
    with torch.no_grad():
        expected = model(**inputs).last_hidden_state.mean(1).numpy()
    np.testing.assert_allclose(enc.transform(paths[:2]), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"takes clips of exactly 4 frames"):
        VideoEncoder(f"hf:{tmp_path / 'videomae'}", n_frames=8, device="cpu").fit(
            paths[:1]
        )


def test_a_huggingface_image_model_encodes_the_frames(digits_clips, tmp_path):
    # A checkpoint without num_frames is an image model: the frames go through
    # ImageEncoder's "hf:" adapter, pooled over time.
    transformers = pytest.importorskip("transformers")
    paths, _ = digits_clips
    config = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        image_size=16,
        patch_size=8,
    )
    torch.manual_seed(0)
    transformers.ViTModel(config).save_pretrained(tmp_path / "vit")
    transformers.ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(
        tmp_path / "vit"
    )
    backbone = f"hf:{tmp_path / 'vit'}"
    enc = VideoEncoder(backbone, n_frames=4, device="cpu").fit(paths[:3])
    assert enc.pooling_ == "mean" and enc._frozen()
    assert enc.backbone_ is enc.frame_encoder_.backbone_
    assert enc.backbone_.modality == "image"
    assert not hasattr(enc.hub_config_, "num_frames")
    frames = np.stack([f for p in paths[:3] for f in reference_frames(p, 4)])
    image = ImageEncoder(backbone, device="cpu").fit(frames)
    expected = image.transform(frames).reshape(3, 4, -1).mean(1)
    np.testing.assert_allclose(enc.transform(paths[:3]), expected, atol=1e-5)


# -- the vectorizer's "video" kind --------------------------------------------------
def write_clip(path, codec, rate=10, level=0):
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        for array in flat_clip(3, 16, 16) + level:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, "gray")))
        container.mux(stream.encode())
    return str(path)


CONTAINERS = [
    (".mov", "libx264", 10),
    (".webm", "libvpx", 10),
    (".avi", "mpeg4", 10),
    (".mpg", "mpeg1video", 25),
    (".wmv", "wmv2", 10),
    (".flv", "flv", 10),
]


def test_the_vectorizer_detects_video_columns(digits_clips, tmp_path):
    from skmm.auto._kinds import detect_kind

    def kind(values):
        found = detect_kind(pd.Series(values, dtype=object), "clips")
        return found.kind, found.form

    paths, _ = digits_clips
    assert kind(paths[:4] + [None]) == ("video", "path")
    for suffix, codec, rate in CONTAINERS:
        clips = [
            write_clip(tmp_path / f"{i}{suffix}", codec, rate, level=50 * i)
            for i in range(2)
        ]
        assert kind(clips) == ("video", "path"), suffix
        assert kind([open(p, "rb").read() for p in clips]) == ("video", "bytes"), suffix
    urls = ["https://example.org/a.mp4?size=2", "s3://bucket/b.WEBM", None] * 2
    assert kind(urls) == ("video", "url")
    assert kind(list(np.zeros((3, 4, 8, 8, 3), np.uint8))) == ("video", "array")
    # Paths are checked on their first bytes: a text file named .mp4 is no video,
    # nor is an MPEG-TS file (no signature at its start), which specific_encoders
    # then names.
    fake = tmp_path / "fake.mp4"
    fake.write_text("a text file with a video extension")
    assert kind([str(fake)] * 3 + [None])[0] == "categorical"
    ts = [write_clip(tmp_path / f"{i}.ts", "libx264") for i in range(2)]
    assert kind(ts)[0] == "categorical"


def test_the_vectorizer_encodes_a_video_column_with_video_encoder(
    digits_clips, tmp_path
):
    from skmm.auto import MultimodalVectorizer

    paths, _ = digits_clips
    X = pd.DataFrame({"clip": paths, "price": np.arange(8.0)})
    vectorizer = MultimodalVectorizer(video=tiny(), normalize=None, memory=None)
    out = vectorizer.fit_transform(X)
    assert vectorizer.column_kinds_ == {"clip": "video", "price": "numeric"}
    block = out[:, vectorizer.output_indices_["clip"]]
    np.testing.assert_allclose(block, tiny().fit_transform(paths), rtol=1e-5)
    # The default: VideoEncoder() (ImageEncoder()'s frozen EfficientNet-Lite0 on 8
    # frames, averaged), its features in the vectorizer's cache.
    cache = tmp_path / "cache"
    vectorizer = MultimodalVectorizer(memory=cache).fit(X.iloc[:2])
    encoder = vectorizer.fuser_.named_encoders_["clip"]
    assert encoder.get_params() == VideoEncoder(memory=cache).get_params()
    assert encoder.n_frames_ == 8 and encoder.pooling_ == "mean"
    assert any(cache.glob("*/*/VideoEncoder-*"))


def test_the_vectorizer_pools_cells_of_several_clips(digits_clips):
    from skmm.auto import MultimodalVectorizer

    paths, _ = digits_clips
    cells = [paths[0:2], [paths[2]], [None, paths[3]], paths[4:7], [], [paths[7]]]
    X = pd.DataFrame({"clips": pd.Series(cells, dtype=object), "n": np.arange(6.0)})
    vectorizer = MultimodalVectorizer(video=tiny(), normalize=None, memory=None)
    block = vectorizer.fit_transform(X)[:, vectorizer.output_indices_["clips"]]
    assert vectorizer.column_kinds_["clips"] == "video"
    single = tiny().fit(paths[:8]).transform(paths[:8])
    expected = [single[0:2].mean(0), single[2], single[3], single[4:7].mean(0)]
    np.testing.assert_allclose(
        block[[0, 1, 2, 3, 5]], [*expected, single[7]], rtol=1e-5
    )
    # An empty cell is missing: the block's mean (missing="mean").
    np.testing.assert_allclose(block[4], block[[0, 1, 2, 3, 5]].mean(0), rtol=1e-5)


# -- scikit-learn's checks that need no data -----------------------------------------
@pytest.mark.parametrize(
    "check",
    [
        ec.check_no_attributes_set_in_init,
        ec.check_parameters_default_constructible,
        ec.check_get_params_invariance,
        ec.check_set_params,
        ec.check_estimator_cloneable,
        ec.check_estimator_repr,
        ec.check_do_not_raise_errors_in_init_or_set_params,
        ec.check_mixin_order,
        ec.check_valid_tag_types,
        ec.check_estimator_tags_renamed,
    ],
    ids=lambda c: c.__name__,
)
def test_input_independent_checks(check):
    check("VideoEncoder", VideoEncoder(device="cpu"))


# -- the video digits ----------------------------------------------------------------
ROWS = [0, 1, 700, 1199]


@pytest.fixture
def four_rows(monkeypatch):
    """The video digits made of four rows of AV-digits only (a second to write)."""
    from sklearn.utils import Bunch

    from skmm.datasets import _video_digits, load_av_digits

    def subset(variant="clean"):
        frame = load_av_digits(variant=variant).frame
        return Bunch(frame=frame.iloc[ROWS].reset_index(drop=True))

    monkeypatch.setattr(_video_digits, "load_av_digits", subset)
    return load_av_digits


def test_video_digits_soundtrack_is_the_recording_and_written_once(four_rows, tmp_path):
    bunch = load_video_digits(tmp_path, variant="hard")
    assert bunch.data.shape == (4, 1)
    assert bunch.target.tolist() == [0, 0, 5, 9]
    waves = four_rows(variant="hard").data["audio"].iloc[ROWS]
    for path, wave in zip(bunch.data["video"], waves):
        pcm = np.clip(np.rint(wave * 32768), -32768, 32767) / 32768
        np.testing.assert_array_equal(read_audio(path, 8000), pcm.astype(np.float32))
    first = tmp_path / "video_digits" / "hard" / "0000_0_george.mp4"
    stamp = first.stat().st_mtime_ns
    again = load_video_digits(tmp_path, variant="hard")
    assert first.stat().st_mtime_ns == stamp  # read, not written again
    assert again.data["video"].tolist() == bunch.data["video"].tolist()
    first.write_bytes(b"")  # a damaged build is written again
    load_video_digits(tmp_path, variant="hard")
    assert first.stat().st_size > 0


def test_video_digits_frames_move_the_mnist_image(four_rows, tmp_path):
    bunch = load_video_digits(tmp_path)
    images = four_rows().data["image"].iloc[ROWS]
    for path, image in zip(bunch.data["video"], images):
        frames = reference_frames(path, 2)
        for frame in frames:
            gray = frame[..., 0].astype(float)
            # The digit somewhere on the black canvas, coded within a few levels.
            best = min(
                np.abs(gray[y : y + 28, x : x + 28] - image).mean()
                for y in range(29)
                for x in range(29)
            )
            assert best < 3  # measured 0.95 at most
        assert not np.array_equal(frames[0], frames[1])  # it moves


@pytest.fixture(scope="module")
def video_digits(tmp_path_factory):
    return load_video_digits(tmp_path_factory.mktemp("data_home"), variant="hard")


@pytest.mark.slow
def test_video_digits_frames_and_soundtrack(video_digits, record_measure, tmp_path):
    X, y = video_digits.data, video_digits.target.to_numpy()
    train = np.isin(video_digits.speaker, TRAIN_SPEAKERS)
    # The fuser's clone of the frames encoder finds the clips' features in the cache.
    frames = tiny(image_size=28, memory=tmp_path)
    sound = AudioFeatures(sample_rate=8000)

    def score(model, data):
        model.fit(data[train], y[train])
        return model.score(data[~train], y[~train])

    alone = {
        name: score(make_pipeline(clone(enc), StandardScaler(), SVC()), X["video"])
        for name, enc in (("frames", frames), ("soundtrack", sound))
    }
    fuser = MultimodalFuser([("frames", frames, "video"), ("sound", sound, "video")])
    both = score(make_pipeline(fuser, SVC()), X)
    # Random frozen CNN on 4 frames; MFCC statistics of the MP4 soundtracks.
    record_measure("unheard speakers, frames alone", alone["frames"], 0.36)  # 0.395
    record_measure("unheard speakers, soundtrack", alone["soundtrack"], 0.50)  # 0.533
    record_measure(
        "unheard speakers, frames + soundtrack", both, 0.60
    )  # measured 0.628
    assert both > max(alone.values()) + 0.05  # fusion adds up the two: +0.095
