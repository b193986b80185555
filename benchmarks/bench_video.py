"""Video: accuracy on the video digits, decoding throughput, memory on a long clip.

1. **Accuracy** on the hard video digits (``load_video_digits(variant="hard")``,
   written to a temporary data home), trained on four speakers and tested on the two
   never heard: frames only (``VideoEncoder`` over ``N_FRAMES`` frames) against
   ``ImageEncoder`` on one frame (the middle one), both with the same frozen
   tower, ``ImageEncoder``'s default (the ImageNet EfficientNet-Lite0 adapter, its
   weights shipped in a registry package), and an SVC; the soundtrack alone (``AudioFeatures`` and a trained ``AudioEncoder``) read
   from the MP4 files against the same on WAV files of the same samples (features
   compared element-wise), and on the soundtrack re-encoded as AAC (lossy) for the
   tolerance; frames and soundtrack fused (``MultimodalFuser``) against each alone.
   ``trained``: the small CNN trained on the labels, ``ImageEncoder`` on the middle
   frame against ``VideoEncoder`` on 4 frames (mean or GRU pooling).
2. **Decoding throughput**: clips/s and frames/s of skmm's reader (``read_video``,
   as ``VideoEncoder`` decodes) against PyAV decoding the same frames by hand (every
   frame decoded in order, the sampled ones converted: the floor for short clips),
   alternating, best of ``REPEATS``; the frames must be equal. On a long clip
   (``LONG_SECONDS`` s of 320 x 240 at 25 fps), the same two, where skmm seeks.
3. **Peak memory** on that long clip: ``VideoEncoder.transform``'s growth of
   resident memory (peak during transform minus before it, in a fresh process)
   against a deliberately bad variant that decodes every frame of the clip first
   (which the measurement must tell apart).

    OMP_NUM_THREADS=1 python benchmarks/bench_video.py [accuracy] [trained] [decoding] [memory]
"""

import ctypes
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_FRAMES = 8
IMAGE_SIZE = 112
REPEATS = 3
LONG_SECONDS, LONG_FPS, LONG_SIZE = 300, 25, (240, 320)
TRAIN_SPEAKERS = ["george", "jackson", "nicolas", "theo"]


# -- 1. accuracy ---------------------------------------------------------------------
def accuracy(home):
    from scipy.io import wavfile
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from skmm.datasets import load_av_digits, load_video_digits
    from skmm.encoders import AudioEncoder, AudioFeatures, ImageEncoder, VideoEncoder
    from skmm.encoders._video_io import read_video
    from skmm.fusion import MultimodalFuser

    start = time.perf_counter()
    bunch = load_video_digits(home, variant="hard")
    print(f"video digits (hard) written in {time.perf_counter() - start:.1f} s")
    X, y = bunch.data, bunch.target.to_numpy()
    train = np.isin(bunch.speaker, TRAIN_SPEAKERS)
    # ImageEncoder's default tower; the fuser's clone of the frames encoder finds
    # the clips' features in the cache.
    frozen = dict(image_size=IMAGE_SIZE, memory=home / "cache")

    def score(features):
        model = make_pipeline(StandardScaler(), SVC()).fit(features[train], y[train])
        return model.score(features[~train], y[~train])

    rows = []
    start = time.perf_counter()
    middle = np.stack([read_video(p, 1)[0] for p in X["video"]])
    image = ImageEncoder(**frozen, device="cpu").fit(middle[train])
    rows.append(("ImageEncoder, middle frame", score(image.transform(middle))))
    print(f"  image: {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    video = VideoEncoder(**frozen, n_frames=N_FRAMES, device="cpu").fit(X[train])
    frames = video.transform(X)
    rows.append((f"VideoEncoder, {N_FRAMES} frames, mean", score(frames)))
    print(f"  video: {time.perf_counter() - start:.0f} s")

    # The soundtrack, and the same samples as WAV files (and as AAC, lossy).
    pcm = load_av_digits(variant="hard").data["audio"]
    wavs, aacs = [], []
    for i, wave in enumerate(pcm):
        samples = np.clip(np.rint(wave * 32768), -32768, 32767).astype(np.int16)
        wavs.append(str(home / f"{i}.wav"))
        wavfile.write(wavs[-1], 8000, samples)
        aacs.append(str(home / f"{i}.mp4"))
        write_aac(aacs[-1], samples)
    sound = {}
    for name, encoder in [
        ("AudioFeatures", AudioFeatures(sample_rate=8000)),
        (
            "AudioEncoder",
            AudioEncoder(sample_rate=8000, max_epochs=10, random_state=0, device="cpu"),
        ),
    ]:
        wav_side = encoder.fit(np.asarray(wavs)[train], y[train]).transform(wavs)
        mp4_side = encoder.transform(X["video"])
        aac_side = encoder.transform(aacs)
        sound[name] = mp4_side
        scale = np.abs(wav_side).max()
        rows.append((f"{name}, soundtrack of the MP4", score(mp4_side)))
        rows.append((f"{name}, WAV of the same samples", score(wav_side)))
        rows.append((f"{name}, soundtrack as AAC 64 kb/s", score(aac_side)))
        print(
            f"  {name}: MP4 vs WAV max |difference| "
            f"{np.abs(mp4_side - wav_side).max():.3g}; AAC vs WAV max |difference| "
            f"{np.abs(aac_side - wav_side).max() / scale:.3g} of the features' range, "
            f"median {np.median(np.abs(aac_side - wav_side)) / scale:.3g}"
        )
    fused = MultimodalFuser(
        [
            (
                "frames",
                VideoEncoder(**frozen, n_frames=N_FRAMES, device="cpu"),
                "video",
            ),
            ("sound", AudioFeatures(sample_rate=8000), "video"),
        ]
    )
    model = make_pipeline(fused, SVC()).fit(X[train], y[train])
    rows.append(
        ("MultimodalFuser: frames + AudioFeatures", model.score(X[~train], y[~train]))
    )
    print("\nunheard speakers (lucas, yweweler), 400 clips:")
    for name, value in rows:
        print(f"  {name:<45} {value:.3f}")


def trained(home):
    """The small CNN trained on the labels: one frame against the clip's frames."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from skmm.datasets import load_video_digits
    from skmm.encoders import ImageEncoder, VideoEncoder
    from skmm.encoders._video_io import read_video

    bunch = load_video_digits(home, variant="hard")
    X, y = bunch.data["video"], bunch.target.to_numpy()
    train = np.isin(bunch.speaker, TRAIN_SPEAKERS)
    cnn = dict(image_size=28, max_epochs=10, random_state=0, device="cpu")

    def score(features):
        model = make_pipeline(StandardScaler(), SVC()).fit(features[train], y[train])
        return model.score(features[~train], y[~train])

    print("\nsmall CNN trained 10 epochs at 28 x 28, unheard speakers:")
    # The middle frame, shrunk while decoded as VideoEncoder shrinks its frames.
    middle = np.stack([read_video(p, 1, min_size=(28, 28))[0] for p in X])
    start = time.perf_counter()
    image = ImageEncoder("cnn", **cnn).fit(middle[train], y[train])
    print(
        f"  ImageEncoder, middle frame               {score(image.transform(middle)):.3f}"
        f"  ({time.perf_counter() - start:.0f} s)"
    )
    for pooling in ("mean", "gru"):
        start = time.perf_counter()
        video = VideoEncoder("cnn", n_frames=4, pooling=pooling, **cnn)
        features = video.fit(X[train], y[train]).transform(X)
        print(
            f"  VideoEncoder, 4 frames, {pooling:<4}            {score(features):.3f}"
            f"  ({time.perf_counter() - start:.0f} s)"
        )


def write_aac(path, samples):
    """The samples as an AAC soundtrack in MP4 (lossy), resampled by PyAV's encoder."""
    import av

    with av.open(path, "w") as container:
        stream = container.add_stream("aac", rate=8000, layout="mono")
        stream.bit_rate = 64000
        frame = av.AudioFrame.from_ndarray(samples[None], format="s16", layout="mono")
        frame.sample_rate = 8000
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=8000)
        for chunk in resampler.resample(frame) + resampler.resample(None):
            container.mux(stream.encode(chunk))
        container.mux(stream.encode())


# -- 2. throughput -------------------------------------------------------------------
def by_hand(path, n_frames):
    """PyAV by hand: every frame decoded in order, each sampled one converted once
    (one converter for the clip, as skmm's reader does)."""
    import av
    from av.video.reformatter import VideoReformatter

    reformatter = VideoReformatter()
    with av.open(path) as container:
        stream = container.streams.video[0]
        start = float(stream.start_time * stream.time_base)
        end = start + float(stream.duration * stream.time_base)
        instants = start + (np.arange(n_frames) + 0.5) * (end - start) / n_frames
        out, held, k = [], None, 0
        for frame in container.decode(stream):
            if k < n_frames and frame.time > instants[k]:
                array = reformatter.reformat(held, format="rgb24").to_ndarray()
                while k < n_frames and frame.time > instants[k]:
                    out.append(array)
                    k += 1
            held = frame
        if k < n_frames:
            array = reformatter.reformat(held, format="rgb24").to_ndarray()
            out += [array] * (n_frames - k)
    return out


def throughput(paths, n_frames, label):
    from skmm.encoders._video_io import read_video

    for ours, theirs in zip(
        read_video(paths[0], n_frames), by_hand(paths[0], n_frames)
    ):
        np.testing.assert_array_equal(ours, theirs)
    best = {"skmm": np.inf, "by hand": np.inf}
    for _ in range(REPEATS):
        for name, read in (("skmm", read_video), ("by hand", by_hand)):
            start = time.perf_counter()
            for path in paths:
                read(path, n_frames)
            best[name] = min(best[name], time.perf_counter() - start)
    n = len(paths)
    for name, seconds in best.items():
        print(
            f"  {label}, {name:<8}: {n / seconds:8.1f} clips/s "
            f"{n * n_frames / seconds:9.1f} frames/s"
        )
    print(f"  {label}: skmm / by hand speed = {best['by hand'] / best['skmm']:.2f}")


def long_clip(folder):
    import av

    path = str(Path(folder) / "long.mp4")
    rng = np.random.default_rng(0)
    height, width = LONG_SIZE
    base = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=LONG_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28"}  # keyframe every 250
        for i in range(LONG_SECONDS * LONG_FPS):
            image = np.roll(base, i % (width // 8), axis=1).repeat(8, 0).repeat(8, 1)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


# -- 3. memory -----------------------------------------------------------------------
def status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(field)


def encode(path, variant):
    """In a child process: fit, reset the peak, transform the long clip."""
    from skmm.encoders import VideoEncoder, _video_io

    if variant == "decode-all-first":
        # The flaw to detect: every frame of the clip decoded before sampling.
        def read_all(container, name, n_frames, fps, min_size):
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            index = np.floor((np.arange(n_frames) + 0.5) * len(frames) / n_frames)
            return [frames[int(i)] for i in index]

        _video_io._read_frames = read_all
    enc = VideoEncoder(
        "cnn", n_frames=N_FRAMES, image_size=64, max_epochs=0, device="cpu"
    )
    enc.fit([path])
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status_mb("VmRSS")
    out = enc.transform([path])
    assert np.isfinite(out).all()
    print(f"{before:.1f} {status_mb('VmHWM'):.1f}")


def memory(path):
    for variant in ("skmm", "decode-all-first"):
        result = subprocess.run(
            [sys.executable, __file__, "encode", path, variant],
            capture_output=True,
            text=True,
            check=True,
        )
        before, peak = map(float, result.stdout.split()[-2:])
        print(f"  {variant:<17}: growth during transform {peak - before:7.1f} MB")
    decoded = LONG_SECONDS * LONG_FPS * LONG_SIZE[0] * LONG_SIZE[1] * 3 / 2**20
    print(f"  (every frame of the clip as uint8 RGB: {decoded:.0f} MB)")


def main(parts):
    from skmm.datasets import load_video_digits

    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        if "accuracy" in parts:
            accuracy(home)
        if "trained" in parts:
            trained(home)
        if "decoding" in parts or "memory" in parts:
            start = time.perf_counter()
            path = long_clip(folder)
            print(f"\n(long clip written in {time.perf_counter() - start:.0f} s)")
        if "decoding" in parts:
            paths = load_video_digits(home, variant="hard").data["video"].tolist()
            print(f"decoding, {N_FRAMES} frames per clip, best of {REPEATS}:")
            throughput(paths, N_FRAMES, f"{len(paths)} digit clips (6-23 frames)")
            throughput([path], N_FRAMES, f"{LONG_SECONDS} s clip, 320x240")
        if "memory" in parts:
            print(
                f"\npeak memory, VideoEncoder.transform of the {LONG_SECONDS} s clip:"
            )
            memory(path)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "encode":
        encode(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1:] or ["accuracy", "trained", "decoding", "memory"])
