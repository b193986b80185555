"""skrub's TableVectorizer, stored for skops as skrub types skmm vouches for."""

import skrub

from .._persistence import SkrubState

__all__ = ["TableVectorizer"]


class TableVectorizer(skrub.TableVectorizer):
    """skrub's ``TableVectorizer``: the categorical, numeric and date columns' encoder.

    The same estimator as :class:`skrub.TableVectorizer` (same parameters, fit and
    output), whose state is saved as a :class:`~skmm._persistence.SkrubState`: a
    ``skops.io`` file of the one-line learners then lists skmm's, scikit-learn's and
    numpy's types only, skmm vouching for the skrub types inside (a state holding any
    other type is left to the file, which lists it as skops would).

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

    def __getstate__(self):
        state = super().__getstate__()
        stored = SkrubState.of(state)
        return state if stored is None else {"skrub_state": stored}

    def __setstate__(self, state):
        if "skrub_state" in state:
            state = state["skrub_state"].value
        super().__setstate__(state)
