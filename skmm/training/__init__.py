"""The training engine every torch estimator of skmm shares.

- :mod:`._estimator`: device, seeding, failure-safe fits and cross-device pickling;
- :mod:`._sources`: the data a training loop reads (in memory, streamed from files,
  Dask partitions), and the rule that chooses between memory and streaming;
- :mod:`._streaming`: lazy items, decoded per batch by DataLoader worker processes;
- :mod:`._precision`: ``precision=`` through ``torch.autocast``;
- :mod:`._distributed`: data-parallel training (``DistributedDataParallel`` under
  ``torchrun``);
- :mod:`._loop`: the one training loop, its history and its built-in callbacks;
- :mod:`._template`: the one fit template (``fit``, ``fit`` on Dask, ``partial_fit``).

Private: the public faces are the estimators and :mod:`skmm.callbacks`.
"""
