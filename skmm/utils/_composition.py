"""``(name, estimator, columns)`` triples, as ColumnTransformer holds them.

The feature-level fuser, the late-fusion ensembles and the networks keep the user's
list of triples as given; :class:`TriplesComposition` exposes it to scikit-learn's
``_BaseComposition`` as ``(name, estimator)`` pairs, so that nested parameters
(``img__lr``) and replacing a child (``set_params(img="drop")``) work the same in
all of them.
"""

import scipy.sparse as sp
from sklearn.utils import check_array

from ._sklearn_compat import _BaseComposition, validate_data


def is_fitted_attribute(name):
    """True for a fitted attribute's name: ``coef_``, not ``__dict__`` or ``_private``."""
    return name.endswith("_") and not name.startswith("__")


def fit_atomic(estimator, fit, *args, **kwargs):
    """Run ``fit(work, *args)`` on a fresh copy and adopt its state only on success.

    ``work`` has the estimator's parameters and private settings (such as its
    ``set_output`` configuration) but none of its fitted attributes. A failed fit (a bad
    item at row 9,000, say) leaves the estimator as it was, including the model of a
    previous successful fit. Used by every skmm estimator, torch-backed or not.
    """
    work = object.__new__(type(estimator))
    work.__dict__.update(
        {k: v for k, v in estimator.__dict__.items() if not is_fitted_attribute(k)}
    )
    result = fit(work, *args, **kwargs)
    estimator.__dict__.clear()
    estimator.__dict__.update(work.__dict__)
    return result


def check_table_shape(X, owner):
    """Check that ``X`` is 2-D with at least one row and one column; return it.

    The input of the composites: one column (or several) per modality.
    """
    if len(X.shape) != 2:
        raise ValueError(
            f"{owner} takes a 2-D input, one column (or several) per modality; got an "
            f"input of shape {X.shape}. Reshape your data, or pass a DataFrame."
        )
    for axis, what in enumerate(("sample", "feature")):
        if X.shape[axis] == 0:
            raise ValueError(
                f"Found array with 0 {what}(s) (shape={tuple(X.shape)}) while a "
                f"minimum of 1 is required by {owner}."
            )
    return X


def check_table(estimator, X, *, reset, accept_sparse=False):
    """Validate the table a composite takes: one column (or several) per modality.

    The one check of every composite (the fuser, the late-fusion ensembles, the nets
    and the matcher) and of an encoder given a one-column DataFrame: DataFrames and
    arrays are kept as they are (their cells are items, checked by the encoders),
    other input becomes an object array; the shape must be 2-D with at least one row
    and one column; ``n_features_in_`` and ``feature_names_in_`` are set (``reset``)
    or checked as scikit-learn does.

    Parameters
    ----------
    estimator : estimator
        The composite; named in the errors and given the fitted input attributes.
    X : DataFrame, array-like or sparse matrix
        The table.
    reset : bool
        True in ``fit``: record the columns; False afterwards: check them.
    accept_sparse : bool, default=False
        Accept a sparse matrix (made CSC, for column selection).

    Returns
    -------
    X : DataFrame, ndarray or sparse matrix
    """
    owner = type(estimator).__name__
    if sp.issparse(X):
        if not accept_sparse:
            raise TypeError(
                f"{owner} takes a DataFrame or a dense array, one column (or several) "
                "per modality; got a sparse matrix."
            )
        X = X.tocsc()
    elif not (hasattr(X, "__array__") and hasattr(X, "shape")):
        X = check_array(X, ensure_all_finite=False, dtype=None, ensure_2d=False)
    check_table_shape(X, owner)
    validate_data(estimator, X=X, skip_check_array=True, reset=reset)
    return X


def is_drop(estimator):
    """True for the ``"drop"`` placeholder of a triple."""
    return isinstance(estimator, str) and estimator == "drop"


class TriplesComposition(_BaseComposition):
    """get/set_params over the triples held in the parameter ``_triples_param``."""

    _triples_param = "encoders"

    @property
    def _pairs(self):
        triples = getattr(self, self._triples_param)
        try:
            return [(name, estimator) for name, estimator, _ in triples]
        except (TypeError, ValueError):
            return triples  # malformed: fit reports it

    @_pairs.setter
    def _pairs(self, value):
        triples = getattr(self, self._triples_param)
        try:
            value = [
                (name, estimator, columns)
                for (name, estimator), (_, _, columns) in zip(value, triples)
            ]
        except (TypeError, ValueError):
            pass
        setattr(self, self._triples_param, value)

    def get_params(self, deep=True):
        """Get the parameters, with each child's as ``name__param``.

        Parameters
        ----------
        deep : bool, default=True
            Also return the children and their parameters.

        Returns
        -------
        params : dict
            Parameter names mapped to their values.
        """
        return self._get_params("_pairs", deep=deep)

    def set_params(self, **params):
        """Set the parameters; ``name=...`` replaces a child, ``name__p=...`` sets one.

        Parameters
        ----------
        **params : dict
            Parameters of this estimator and of its children.

        Returns
        -------
        self : estimator
            This estimator.
        """
        self._set_params("_pairs", **params)
        return self
