"""
=======================================================
Dask: predicting with a cluster, training by partitions
=======================================================

A model is fitted in memory; the table to score is a Dask DataFrame, cut into
partitions that the workers of a cluster encode and classify, each partition
through the same in-memory ``predict`` as a pandas table. Here the cluster is a
:class:`~distributed.LocalCluster` of two worker processes on this machine; a real
cluster only changes the address the client connects to (see :doc:`/scaling`).

The data is AV-digits (shipped with skmm): spoken digits paired with handwritten
ones. We train on five speakers and score the sixth, whom the model never heard.
"""

# %%
# Fit in memory
# -------------
# Frozen feature extractors for both modalities, fused, then a logistic
# regression. ``batch_size`` matters below: a partition of whole batches gives
# results identical to the in-memory ones, bit for bit.
import time

import dask
import dask.dataframe as dd
import numpy as np
from distributed import Client, LocalCluster
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skmm.datasets import load_av_digits
from skmm.encoders import AudioFeatures, ImageEncoder
from skmm.fusion import MultimodalFuser
from skmm.nn import MultimodalNetClassifier
from skmm.utils import map_partitions

bunch = load_av_digits(variant="hard")
X, y = bunch.data, bunch.target.to_numpy()
test = bunch.speaker == "theo"
X_train, y_train, X_test, y_test = X[~test], y[~test], X[test], y[test]

BATCH = 50
fuser = MultimodalFuser(
    [
        (
            "img",
            ImageEncoder("cnn", max_epochs=3, batch_size=BATCH, random_state=0),
            "image",
        ),
        ("snd", AudioFeatures(sample_rate=8000), "audio"),
    ]
)
model = make_pipeline(fuser, LogisticRegression(max_iter=2000))
model.fit(X_train, y_train)
print(f"in memory: accuracy on the unseen speaker {model.score(X_test, y_test):.3f}")

# %%
# The same table as a Dask DataFrame
# ----------------------------------
# Four partitions of 50 rows. The image and audio columns hold NumPy arrays: Dask
# would turn object columns into strings, so we keep them objects (a column of file
# paths needs no such setting).
dask.config.set({"dataframe.convert-string": False})
X_dask = dd.from_pandas(X_test, chunksize=BATCH)
print(f"{X_dask.npartitions} partitions")

# %%
# Encode and predict on the cluster
# ---------------------------------
# ``fuser.transform`` on a Dask DataFrame returns a lazy Dask DataFrame whose
# columns are the feature names, known before anything runs. The pipeline itself
# is mapped over the partitions with :func:`~skmm.utils.map_partitions`. Each worker
# receives the fitted model once, not once per partition.
#
# The two workers are threads of this process (``processes=False``), so that this
# page runs as a script on any platform; worker processes, as on a real cluster,
# need the script's code under ``if __name__ == "__main__":``.
with (
    LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster,
    Client(cluster) as client,
):
    features = model[0].transform(X_dask)
    print("feature columns:", list(features.columns[:3]), "...", len(features.columns))
    labels = map_partitions(model, X_dask, "predict")
    start = time.perf_counter()
    predicted = labels.compute()
    print(
        f"predicted {len(predicted)} rows on 2 workers in {time.perf_counter() - start:.1f} s"
    )

# %%
# The same answers as in memory
# -----------------------------
# The partitions are whole batches, so the predictions (and the probabilities behind
# them) are those of the in-memory model exactly.
in_memory = model.predict(X_test)
print("identical to the in-memory predictions:", np.array_equal(predicted, in_memory))
print(f"accuracy on the cluster: {np.mean(predicted.to_numpy() == y_test):.3f}")

# %%
# Train on a Dask DataFrame, a partition at a time
# ------------------------------------------------
# A net's ``fit`` also takes a Dask DataFrame (with ``y`` a Dask Series split like
# it): each epoch reads the partitions in a random order, one decoded at a time
# while the next is computed, so memory holds a partition rather than the table.
# The classes come from one pass over ``y``; the towers' preprocessing from the
# first partition. Batches are drawn within a partition, so each partition must be
# a fair sample of the rows: the table is shuffled once before it is cut (and its
# index reset, since ``from_pandas`` sorts by the index; skmm warns when a
# partition's classes are far from the whole table's). Here the training rows are
# cut into 8 partitions, and the same net is fitted in memory for comparison.


def make_net():
    return MultimodalNetClassifier(
        [
            ("img", ImageEncoder("cnn"), "image"),
            ("snd", AudioFeatures(sample_rate=8000), "audio"),
        ],
        max_epochs=8,
        random_state=0,
    )


shuffled = X_train.assign(digit=y_train).sample(frac=1, random_state=0)
shuffled = shuffled.reset_index(drop=True)
table = dd.from_pandas(shuffled, npartitions=8)
streamed = make_net().fit(table[["image", "audio"]], table["digit"])
in_memory = make_net().fit(X_train, y_train)
print(
    f"net trained on 8 partitions: {streamed.score(X_test, y_test):.3f}; "
    f"in memory: {in_memory.score(X_test, y_test):.3f}"
)

# %%
# ``partial_fit`` does the same from any source of chunks: one pass over the rows
# of each call, continuing from the weights and the optimizer state the previous
# call left (both pickle with the net, so training can stop and resume elsewhere).
# The first call needs every class.
net = make_net()
for _ in range(8):
    for rows in np.array_split(np.arange(len(shuffled)), 8):
        chunk = shuffled.iloc[rows]
        net.partial_fit(
            chunk[["image", "audio"]], chunk["digit"], classes=np.arange(10)
        )
print(f"net trained by partial_fit: {net.score(X_test, y_test):.3f}")
