"""Shared fixtures: where the real data sets live, and small slices of them."""

import os
from pathlib import Path

import pytest
import torch
from _tiny_hubs import TITLES, save_tiny_bert, save_tiny_clip, save_tiny_wav2vec2

# The real data sets sit beside the checkout (../shared/data); SKMM_SHARED_DATA overrides.
SHARED_DATA = Path(
    os.environ.get(
        "SKMM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)


@pytest.fixture(scope="session")
def shared_data():
    """Path of ../shared/data; missing data fails in CI and skips elsewhere."""
    if not SHARED_DATA.is_dir():
        message = f"real data sets not found at {SHARED_DATA} (set SKMM_SHARED_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core machine: a second torch thread only adds
    contention (threads spinning against each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- Tiny hub models saved locally (no download), for the hubs' tests ------------------
@pytest.fixture(scope="module")
def hf_bert(tmp_path_factory):
    """A 2-layer BERT whose vocabulary is the words of ``_tiny_hubs.TITLES``."""
    transformers = pytest.importorskip("transformers")
    return save_tiny_bert(transformers, tmp_path_factory.mktemp("hf_bert"), TITLES)


@pytest.fixture(scope="module")
def hf_wav2vec2(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    return save_tiny_wav2vec2(transformers, tmp_path_factory.mktemp("hf_wav2vec2"))


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    open_clip = pytest.importorskip("open_clip")
    return save_tiny_clip(open_clip, tmp_path_factory.mktemp("open_clip"))


# -- Measured values of the floor tests, kept in the CI log ------------------------------
# Each floor test records what it measured beside its floor; the run ends with one table
# of them (pytest's captured output of passing tests never reaches the log).
_MEASURES = []


@pytest.fixture
def record_measure(request):
    """``record_measure(name, value, floor)``: record a measured value, assert the floor.

    The value is recorded before it is checked, so a failing run still prints it.
    """

    def record(name, value, floor):
        value, floor = float(value), float(floor)
        _MEASURES.append((request.node.name, name, value, floor))
        assert value >= floor, f"{name}: measured {value:.4f}, below the floor {floor}"
        return value

    return record


@pytest.fixture
def count_loads(monkeypatch):
    """``count_loads(cls)``: patch ``cls._load`` (an encoder's decoding of items) to
    record how many items each call decodes, in the list it returns."""

    def patch(cls):
        loads = []
        original = cls._load
        monkeypatch.setattr(
            cls,
            "_load",
            lambda self, column, rows: (
                loads.append(len(rows)) or original(self, column, rows)
            ),
        )
        return loads

    return patch


def pytest_terminal_summary(terminalreporter):
    if not _MEASURES:
        return
    terminalreporter.section("measured values")
    width = max(len(f"{test}: {name}") for test, name, _, _ in _MEASURES)
    terminalreporter.write_line(f"{'test: measure':<{width}}  measured     floor")
    for test, name, value, floor in _MEASURES:
        mark = "" if value >= floor else "  BELOW FLOOR"
        terminalreporter.write_line(
            f"{f'{test}: {name}':<{width}}  {value:8.4f}  {floor:8.4f}{mark}"
        )
