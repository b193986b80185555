"""Docstring fragments shared by estimators that share parameters.

The classifier and the regressor of a family take the same parameters; their
descriptions are written once and put in place by :func:`fill_doc`, as pandas and
scikit-learn's ``_doc`` helpers do for shared parameter texts.
"""

import textwrap


def fill_doc(**fragments):
    """Class decorator putting shared texts in place of ``{name}`` lines.

    A line of the docstring made of ``{name}`` alone (with its indentation) is
    replaced by the fragment ``name``, dedented and indented like that line.

    Parameters
    ----------
    **fragments : str
        The texts, by name.

    Returns
    -------
    decorate : callable
        The decorator.

    Examples
    --------
    >>> from skmm.utils._docs import fill_doc
    >>> @fill_doc(seed="random_state : int\\n    The seed.")
    ... class A:
    ...     '''Parameters
    ...     ----------
    ...     {seed}
    ...     '''
    >>> print(*A.__doc__.splitlines()[2:4], sep=chr(10))
        random_state : int
            The seed.
    """

    def decorate(cls):
        lines = []
        for line in cls.__doc__.splitlines(keepends=True):
            key = line.strip()[1:-1] if line.strip().startswith("{") else None
            if key in fragments:
                indent = line[: len(line) - len(line.lstrip())]
                text = textwrap.dedent(fragments[key]).strip("\n") + "\n"
                lines.append(textwrap.indent(text, indent))
            else:
                lines.append(line)
        cls.__doc__ = "".join(lines)
        return cls

    return decorate
