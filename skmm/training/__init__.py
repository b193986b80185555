"""The training engine every torch estimator of skmm shares.

- :mod:`._estimator`: device, seeding, failure-safe fits and cross-device pickling;
- :mod:`._sources`: the data a training loop reads (in memory, Dask partitions);
- :mod:`._loop`: the one training loop, its history and its built-in callbacks;
- :mod:`._template`: the one fit template (``fit``, ``fit`` on Dask, ``partial_fit``).

Private: the public faces are the estimators and :mod:`skmm.callbacks`.
"""
