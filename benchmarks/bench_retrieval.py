"""Retrieval at catalogue scale: chunked kneighbors against a full similarity matrix.

1,000 queries against 100,000 candidates (64-d embeddings, top 10), each search in a
fresh process, so that its peak resident-memory growth is its own:

- ``index``: ``MultimodalMatcher.kneighbors`` on precomputed embeddings
  (``EmbeddingIndex``), candidates read 8,192 at a time, each chunk's best merged
  into each query's running best (``np.argpartition``);
- ``items``: the same from the raw items of two ``"passthrough"`` sides, the
  candidates embedded a chunk at a time;
- ``brute force``: the full 1,000 x 100,000 similarity matrix, then
  ``np.argpartition`` and a sort of the 10 best (``items``: after embedding all
  the candidates at once).

The matcher is built with ``max_epochs=0`` (nothing to train: the timings do not
depend on the weights). Prints time and memory side by side, the ratios, and checks
that both ways retrieve the same candidates.

    python benchmarks/bench_retrieval.py      # ~1 min
"""

import json
import resource
import subprocess
import sys
import time

import numpy as np

N_QUERIES, N_CANDIDATES, WIDTH, K = 1000, 100_000, 64, 10


def current_rss_mb():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _unit_rows(rng, n):
    z = rng.standard_normal((n, WIDTH), dtype=np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    return z


def _matcher():
    from skmm.nn import MultimodalMatcher

    rng = np.random.default_rng(0)
    return MultimodalMatcher(
        [
            ("query", "passthrough", slice(0, WIDTH)),
            ("candidate", "passthrough", slice(WIDTH, 2 * WIDTH)),
        ],
        embedding_dim=WIDTH,
        max_epochs=0,
        batch_size=1024,
        random_state=0,
        device="cpu",
    ).fit(rng.normal(size=(64, 2 * WIDTH)))


def child(variant):
    """Run one search; print its time, memory growth and result as JSON."""
    import torch

    from skmm.nn import EmbeddingIndex

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    matcher = _matcher()
    if variant.endswith("items"):
        queries = rng.standard_normal((N_QUERIES, WIDTH), dtype=np.float32)
        candidates = rng.standard_normal((N_CANDIDATES, WIDTH), dtype=np.float32)
    else:
        queries, candidates = _unit_rows(rng, N_QUERIES), _unit_rows(rng, N_CANDIDATES)
    before = current_rss_mb()
    start = time.perf_counter()
    if variant == "skmm index":
        indices = matcher.kneighbors(
            EmbeddingIndex(queries, side="query"),
            EmbeddingIndex(candidates, side="candidate"),
            n_neighbors=K,
        )
    elif variant == "skmm items":
        indices = matcher.kneighbors(queries, candidates, n_neighbors=K)
    else:
        if variant == "brute force items":
            queries = matcher.embed(queries, side="query")
            candidates = matcher.embed(candidates, side="candidate")
        similarity = queries @ candidates.T
        best = np.argpartition(-similarity, K - 1, axis=1)[:, :K]
        order = np.argsort(-np.take_along_axis(similarity, best, 1), axis=1)
        indices = np.take_along_axis(best, order, 1)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": seconds,
                "growth_mb": peak_rss_mb() - before,
                "indices": indices[:, :K].tolist(),
            }
        )
    )


def run(variant, repeats=2):
    """Best time and largest memory growth over ``repeats`` fresh processes."""
    results = [
        json.loads(
            subprocess.run(
                [sys.executable, __file__, "--child", variant],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        for _ in range(repeats)
    ]
    return (
        min(r["seconds"] for r in results),
        max(r["growth_mb"] for r in results),
        np.asarray(results[0]["indices"]),
    )


def main():
    print(
        f"{N_QUERIES:,} queries x {N_CANDIDATES:,} candidates, {WIDTH}-d embeddings, "
        f"top {K}; one torch thread; best time and largest peak-RSS growth of 2 "
        "fresh processes each"
    )
    for source in ("index", "items"):
        t_skmm, m_skmm, i_skmm = run(f"skmm {source}")
        t_brute, m_brute, i_brute = run(f"brute force {source}")
        same = (i_skmm == i_brute).mean()
        print(
            f"\nfrom {'precomputed embeddings' if source == 'index' else 'raw items'}:\n"
            f"  chunked kneighbors: {t_skmm:6.2f} s, peak RSS growth {m_skmm:7.1f} MB\n"
            f"  full matrix:        {t_brute:6.2f} s, peak RSS growth {m_brute:7.1f} MB\n"
            f"  time ratio (full / chunked) {t_brute / t_skmm:.2f}, memory ratio "
            f"{m_brute / max(m_skmm, 1e-9):.1f}x; same neighbours: {same:.2%}"
        )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
