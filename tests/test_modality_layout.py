"""Tests of the one modality layout (skmm.utils.ModalityLayout) and of the one meaning
of "missing" that every composite reads from it."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from numpy.testing import assert_array_equal
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.preprocessing import StandardScaler

from skmm.fusion import LateFusionClassifier, MultimodalFuser
from skmm.utils import Modality, ModalityLayout
from skmm.utils._composition import missing_rows

X = pd.DataFrame(
    {
        "a": [1.0, np.nan, np.nan, 4.0],
        "b": [1.0, 2.0, np.nan, 4.0],
        "txt": ["x", None, "z", pd.NA],
        "n": [1.0, 2.0, 3.0, 4.0],
    }
)


def layout(triples, X=X, **kwargs):
    """A layout built for a fuser, the composite whose parameters names may not
    take."""
    return ModalityLayout.from_triples(triples, X, owner=MultimodalFuser([]), **kwargs)


# -- building: the one validation of the triples ---------------------------------------
@pytest.mark.parametrize(
    "triples, kwargs, error, match",
    [
        ([], {}, ValueError, r"'encoders' should be a non-empty list of \(name, encod"),
        ([("a", StandardScaler())], {}, ValueError, "columns\\) triples"),
        ([(1, StandardScaler(), ["a"])], {}, ValueError, "triples"),
        (
            [("a", "drop", ["a"]), ("b", "drop", ["b"])],
            {"n_modalities": 3},
            ValueError,
            "a list of two .* one per side",
        ),
        (
            [("x", StandardScaler(), ["a"]), ("x", "drop", ["b"])],
            {},
            ValueError,
            "Names provided are not unique",
        ),
        ([("x__1", StandardScaler(), ["a"])], {}, ValueError, "__"),
        ([("fusion", StandardScaler(), ["a"])], {}, ValueError, "conflict"),
        ([("x", StandardScaler, ["a"])], {}, TypeError, "estimator instance"),
        (
            [("x", "keep", ["a"])],
            {},
            ValueError,
            "encoder 'x': the only strings allowed in place of an encoder are 'drop' "
            "and 'passthrough'",
        ),
        (
            [("x", "passthrough", ["a"])],
            {"strings": ("drop",), "role": "model"},
            ValueError,
            "model 'x': the only strings allowed in place of a",
        ),
        (
            [("x", LogisticRegression(), ["a"])],
            {},
            TypeError,
            "All estimators should implement fit and transform.*Encoder 'x'",
        ),
        (
            [("x", "drop", ["a"])],
            {},
            ValueError,
            "All encoders are dropped. At least one is required",
        ),
        (
            [("x", StandardScaler(), [])],
            {"empty_columns": "error"},
            ValueError,
            r"encoder 'x' selects no column of X \(columns=\[\]\); X has 4",
        ),
        ([("x", StandardScaler(), ["zz"])], {}, ValueError, "not columns of the"),
    ],
)
def test_invalid_triples(triples, kwargs, error, match):
    with pytest.raises(error, match=match):
        layout(triples, **kwargs)


def test_columns_resolved_to_positions_and_names():
    found = layout(
        [
            ("one", StandardScaler(), "a"),
            ("mask", StandardScaler(), [False, True, False, False]),
            ("sliced", StandardScaler(), slice("txt", "n")),
            ("called", StandardScaler(), lambda X: [c == "n" for c in X.columns]),
            ("none", StandardScaler(), []),
        ],
        remainder="drop",
    )
    assert found.names == ["one", "mask", "sliced", "called", "none"]
    assert [m.indices for m in found] == [[0], [1], [2, 3], [3], []]
    assert [m.feature_names for m in found] == [["a"], ["b"], ["txt", "n"], ["n"], []]
    # A scalar selects a 1-D column; the callable is replaced by what it returned.
    assert [m.scalar for m in found] == [True, False, False, False, False]
    assert found["called"].columns == [False, False, False, True]
    assert [m.name for m in found.active] == ["one", "mask", "sliced", "called"]
    assert found.select(X, "one").name == "a"
    # Every column is used: no remainder.
    assert "remainder" not in found
    assert found.output_indices["remainder"] == slice(0, 0)


@pytest.mark.parametrize(
    "columns, expected",
    [
        ([["a"], ["b"]], ["txt", "n"]),
        ([[0], [1]], [2, 3]),
        ([[True, False, False, False]], [False, True, True, True]),
        ([lambda X: ["a"]], [1, 2, 3]),
    ],
)
def test_remainder_columns_in_the_kind_of_the_keys(columns, expected):
    """As ColumnTransformer: names for names, a mask for masks, else positions."""
    triples = [(f"m{i}", StandardScaler(), c) for i, c in enumerate(columns)]
    rest = layout(triples, remainder="passthrough")["remainder"]
    assert rest.columns == expected
    assert rest.estimator == "passthrough" and rest.active


def test_arrays_have_positions_only():
    array = X[["a", "b", "n"]].to_numpy()
    found = layout([("x", StandardScaler(), [0, 2])], X=array)
    assert found["x"].feature_names is None and found.feature_names_in is None
    assert not found.by_name(X)
    assert_array_equal(found.select(array, "x"), array[:, [0, 2]])


def test_dataframes_are_read_by_name():
    found = layout([("x", StandardScaler(), ["b", "a"]), ("t", "drop", ["txt"])])
    shuffled = X[["n", "txt", "a", "b"]].assign(extra=0)
    assert found.by_name(shuffled)
    assert found.positions(shuffled, "x") == [3, 2]
    pd.testing.assert_frame_equal(found.select(shuffled, "x"), X[["b", "a"]])
    # Only the columns of active modalities are needed.
    found.check_columns(X.drop(columns="txt"))
    with pytest.raises(ValueError, match=r"columns are missing: \{'a'\}"):
        found.check_columns(X.drop(columns="a"))
    # Columns named at fit cannot be found in an array.
    with pytest.raises(ValueError, match="only supported for dataframes"):
        found.select(X.to_numpy(), "x")


def test_outputs_and_triples():
    found = layout(
        [
            ("x", StandardScaler(), ["a"]),
            ("y", "drop", ["b"]),
            ("z", "passthrough", "n"),
        ]
    )
    found.set_outputs({"x": 1, "z": 3})
    assert found.output_indices == {
        "x": slice(0, 1),
        "y": slice(0, 0),
        "z": slice(1, 4),
    }
    found.set_outputs({"x": slice(0, 2), "z": slice(0, 2)})
    assert found["z"].outputs == slice(0, 2)
    assert found.triples()[1] == ("y", "drop", ["b"])
    assert found.named_estimators().z == "passthrough"
    assert "'x': StandardScaler on ['a']" in repr(found)
    with pytest.raises(KeyError, match="'w' is not a modality"):
        found["w"]


# -- the one meaning of "missing" --------------------------------------------------------
def test_a_modality_is_missing_where_every_cell_is():
    found = layout(
        [("ab", StandardScaler(), ["a", "b"]), ("txt", "passthrough", "txt")]
    )
    missing = found.missing(X)
    # Row 1: a missing, b present -> present; row 2: both missing -> missing.
    assert_array_equal(missing["ab"], [False, False, True, False])
    # None and pd.NA are missing; a string is not.
    assert_array_equal(missing["txt"], [False, True, False, True])
    with pytest.raises(
        ValueError,
        match=r"^MultimodalFuser: modality 'ab' \(columns \['a', 'b'\]\) is missing "
        r"\(None/NaN\) in 1 row\(s\): 2\. Fill them\.$",
    ):
        found.missing(X, allowed=False, advice="Fill them.")
    with pytest.raises(
        ValueError, match="'txt'.*in all 2 training rows; there is noth"
    ):
        found.missing(X.iloc[[1, 3]], training=True)


@pytest.mark.parametrize(
    "selection, expected",
    [
        (np.array([[np.nan, np.nan], [np.nan, 1.0], [0.0, 0.0]]), [True, False, False]),
        (
            # A list holding only missing items is a cell of no item: missing.
            np.array([None, np.float64("nan"), "", [None]], dtype=object),
            [True, True, False, True],
        ),
        (
            pd.Series([pd.NaT, pd.Timestamp("2024-01-01")]),
            [True, False],
        ),
        (pd.array([1, None], dtype="Int32"), [False, True]),
        (
            sp.csr_matrix(np.array([[np.nan, 0.0], [0.0, 0.0], [np.nan, np.nan]])),
            [False, False, True],
        ),
    ],
    ids=["floats", "objects", "datetimes", "nullable-ints", "sparse"],
)
def test_missing_cells_by_container(selection, expected):
    assert_array_equal(missing_rows(selection), expected)


def test_missing_cells_in_polars():
    pl = pytest.importorskip("polars")
    frame = pl.DataFrame({"a": [1.0, None, None], "b": ["x", "y", None]})
    assert_array_equal(missing_rows(frame), [False, False, True])
    assert_array_equal(missing_rows(frame["b"]), [False, False, True])


class Recorder(ClassifierMixin, BaseEstimator):
    """Records the rows it is fitted on."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.rows_ = len(X)
        return self

    def predict_proba(self, X):
        return np.full((len(X), len(self.classes_)), 1 / len(self.classes_))


def test_fuser_and_late_fusion_mean_the_same_rows():
    """One meaning: the fuser fills the rows where the layout says a modality is
    missing, late fusion trains each model on the others."""
    data = X[["a", "b", "n"]]
    y = [0, 1, 0, 1]
    fuser = MultimodalFuser(
        [("ab", "passthrough", ["a", "b"]), ("n", "passthrough", ["n"])],
        missing="indicator",
        normalize=None,
    ).fit(data)
    late = LateFusionClassifier(
        [("ab", Recorder(), ["a", "b"]), ("n", Recorder(), ["n"])]
    ).fit(data, y)
    expected = [False, False, True, False]
    assert_array_equal(fuser.modalities_.missing(data)["ab"], expected)
    assert_array_equal(late.modalities_.missing(data)["ab"], expected)
    assert_array_equal(fuser.transform(data)[:, -2], expected)
    assert late.named_estimators_.ab.rows_ == 3
    # A NaN in one of two cells is a missing value inside a present modality: the
    # fuser's "indicator" imputes it (to the mean of a) without flagging the row.
    assert fuser.transform(data)[1, 0] == pytest.approx(np.nanmean(data["a"]))


def test_modality_is_a_plain_record():
    m = Modality("img", Ridge(), "image", [0], ["image"], scalar=True)
    assert m.active and not m.dropped and m.outputs == slice(0, 0)
    assert not Modality("img", "drop", "image", [0]).active
    assert not Modality("img", GaussianNB(), [], []).active
