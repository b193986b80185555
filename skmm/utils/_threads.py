"""One modality per joblib task, each capped at its share of the CPUs.

Every composite with ``n_jobs`` (the fuser, the late-fusion ensembles) runs its
modalities' fits and transforms through :func:`parallel_over_modalities`. Torch
encoders and models use every core each (intra-op threads), so two of them fitted at
once would oversubscribe the CPUs; each task is therefore capped at
``cpu_count() // n_workers`` threads, as joblib itself caps its worker processes.

How each backend is capped, without touching another thread's settings:

- **Process workers** (joblib's default ``loky``, ``multiprocessing``): joblib starts
  each worker with ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``
  ... set to its share (its ``inner_max_num_threads``), which torch, numpy's BLAS
  and OpenMP read when they start in the worker.
- **Thread workers** (the ``threading`` backend, a Dask cluster with
  ``processes=False``) share one process, whose thread counts are process-wide for
  BLAS and torch's ``torch.set_num_threads`` (it sets a global count that every new
  thread starts from): saving and restoring it from concurrent workers races, and
  the last worker to restore can leave the whole process capped. Each task caps only
  what belongs to its own thread: the OpenMP thread count (``omp_set_num_threads``
  sets the calling thread's count, read by torch's intra-op loops and by oneDNN),
  through threadpoolctl, after torch has started the thread's own pools (which would
  otherwise reset it on first use). MKL follows the OpenMP count, except after a
  user's own ``torch.set_num_threads``, which fixes MKL's count per thread; torch has
  no per-thread setter to lower it then.
"""

import sys
from contextlib import contextmanager

from joblib import cpu_count, effective_n_jobs
from sklearn.utils.parallel import Parallel, delayed
from threadpoolctl import threadpool_limits


def threads_per_task(n_jobs, n_tasks):
    """Each concurrent task's share of the CPUs, or None when tasks run one by one."""
    n_workers = min(effective_n_jobs(n_jobs), n_tasks)
    return None if n_workers <= 1 else max(1, cpu_count() // n_workers)


@contextmanager
def thread_limit(n_threads):
    """Cap the calling thread's OpenMP threads (torch's intra-op threads) at
    ``n_threads``; None caps nothing."""
    if n_threads is None:
        yield
        return
    torch = sys.modules.get("torch")
    if torch is not None:
        # Starts this thread's torch pools now: on first use they would set the
        # thread's OpenMP count back to the process-wide one.
        torch.get_num_threads()
    with threadpool_limits(limits=n_threads, user_api="openmp"):
        yield


def _capped(function, n_threads, args):
    with thread_limit(n_threads):
        return function(*args)


def parallel_over_modalities(n_jobs, function, tasks):
    """``[function(*args) for args in tasks]``, run by joblib with ``n_jobs``.

    scikit-learn's ``Parallel`` (which carries its configuration to the workers),
    each task capped at its share of the CPUs (see the module's description).
    """
    tasks = list(tasks)
    if effective_n_jobs(n_jobs) == 1:
        # One by one in this process: no joblib dispatch per call (one-row latency).
        return [function(*args) for args in tasks]
    n_threads = threads_per_task(n_jobs, len(tasks))
    return Parallel(n_jobs=n_jobs)(
        delayed(_capped)(function, n_threads, args) for args in tasks
    )
