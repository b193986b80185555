"""skrub's TableVectorizer, stored for skops as skrub types skmm vouches for."""

import copyreg

import skrub

from .._persistence import SkrubState

__all__ = ["TableVectorizer"]


class TableVectorizer(skrub.TableVectorizer):
    """skrub's ``TableVectorizer``: the categorical, numeric and date columns' encoder.

    The same estimator as :class:`skrub.TableVectorizer` (same parameters, fit and
    output), whose state ``skops.io`` saves as a
    :class:`~skmm._persistence.SkrubState`: a skops file of the one-line learners
    then lists skmm's, scikit-learn's and numpy's types only, skmm vouching for the
    skrub types inside (a state holding any other type is left to the file, which
    lists it as skops would). A pickle holds skrub's state as it is.

    See Also
    --------
    skrub.TableVectorizer : The estimator itself.

    Examples
    --------
    >>> import pandas as pd
    >>> from skmm.auto._tabular import TableVectorizer
    >>> X = pd.DataFrame({"colour": ["red", "blue", "red"], "price": [1.0, 2.0, 3.0]})
    >>> TableVectorizer().fit(X).get_feature_names_out().tolist()
    ['colour_red', 'price']
    """

    # skops reads the state through ``__getstate__``; pickle, copy, joblib and
    # cloudpickle through ``__reduce_ex__``, which keeps skrub's own state: they
    # trust what they load anyway, and a skops file of the state would cost them a
    # second per copy and a state that differs between two dumps (zip times).
    def __getstate__(self):
        state = super().__getstate__()
        stored = SkrubState.of(state)
        return state if stored is None else {"skrub_state": stored}

    def __reduce_ex__(self, protocol):
        return (copyreg.__newobj__, (type(self),), super().__getstate__())

    def __setstate__(self, state):
        if "skrub_state" in state:
            state = state["skrub_state"].value
        super().__setstate__(state)
