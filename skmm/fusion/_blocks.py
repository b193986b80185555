"""The block pipeline of :class:`~skmm.fusion.MultimodalFuser`: from the encoders'
outputs to the fused matrix.

Each encoder's output is one block. Between encoding and fusion every block goes
through the same steps, all fitted on the training rows: missing rows filled
(``missing``), features scaled (``normalize``), projected (``projection``), scaled as
a block (``normalize="block"``) and weighted (``weights``); then the blocks are fused
(``fusion``). A block that none of these steps touches (``normalize=None``, no
projection, ``missing="error"``) is kept as its encoder returned it, whatever its
dtype or container, and concatenated as ``ColumnTransformer`` concatenates: a
fuser configured as a ColumnTransformer behaves as one.
"""

import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import Bunch, check_array
from sklearn.utils.sparsefuncs import mean_variance_axis
from sklearn.utils.validation import _check_method_params

from ..utils._composition import (
    check_labels,
    describe_columns,
    missing_rows,
    nan_mask,
    shown_rows,
)
from ..utils._sklearn_compat import (
    _get_container_adapter,
    _get_output_config,
    _safe_indexing,
)
from ._ops import ELEMENTWISE, fuse, tensor_width
from ._projection import (
    CLASS_PROJECTIONS,
    PAIRED_PROJECTIONS,
    ClassProjection,
    PairedProjection,
    default_paired_estimator,
)


class BlockPipelineMixin:
    """Fill, scale, project, weigh and fuse the encoders' blocks.

    Reads the fuser's parameters ``fusion``, ``projection``,
    ``projection_estimator``, ``cv``, ``weights``, ``normalize``, ``missing``,
    ``sparse_threshold`` and ``random_state``; sets ``block_transformers_``,
    ``block_scales_``, ``sparse_output_`` and the output columns of
    ``modalities_``.
    """

    # -- the parameters, per block --------------------------------------------------------
    def _projection_for(self, name):
        if isinstance(self.projection, dict):
            return self.projection.get(name)
        return self.projection

    def _class_projection(self):
        """True when every block is projected to one class-indexed space."""
        return isinstance(self.projection, str) and self.projection in CLASS_PROJECTIONS

    def _paired_projection(self):
        """True when two blocks are aligned with each other by CCA or PLS."""
        return (
            isinstance(self.projection, str) and self.projection in PAIRED_PROJECTIONS
        )

    def _normalize_for(self, name):
        if isinstance(self.normalize, dict):
            return self.normalize.get(name, "standard")
        return self.normalize

    def _weight_for(self, name):
        return 1.0 if self.weights is None else self.weights.get(name, 1.0)

    def _keeps_block(self, name):
        """True when no step touches the block: it is fused as the encoder gave it."""
        return (
            self.fusion == "concat"
            and self.missing == "error"
            and self._normalize_for(name) is None
            and self._projection_for(name) is None
        )

    def _check_names(self, param, mapping, names):
        unknown = sorted(set(mapping) - set(names), key=str)
        if unknown:
            raise ValueError(
                f"{param} has names {unknown} that are not encoder names; the encoders "
                f"are {names}."
            )

    def _validate_fusion_params(self, names):
        """Check weights, projection and normalize against the modality names."""
        if self.weights is not None:
            self._check_names("weights", self.weights, names)
            for name, weight in self.weights.items():
                if (
                    not isinstance(weight, Real)
                    or isinstance(weight, bool)
                    or not np.isfinite(weight)
                    or weight < 0
                ):
                    raise ValueError(
                        f"weights[{name!r}] must be a finite number >= 0; got {weight!r}."
                    )
            if self.fusion in ("product", "max"):
                raise ValueError(
                    f"fusion={self.fusion!r} takes no weights; got weights="
                    f"{self.weights!r}. Use 'sum', 'mean', 'weighted', 'concat' or "
                    "'tensor' to weigh the modalities."
                )
        elif self.fusion == "weighted":
            raise ValueError(
                "fusion='weighted' needs weights, a dict of modality name to weight; "
                "without them use fusion='sum'."
            )
        if isinstance(self.projection, dict):
            self._check_names("projection", self.projection, names)
            for name, k in self.projection.items():
                if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
                    raise ValueError(
                        f"projection[{name!r}] must be an int >= 1; got {k!r}."
                    )
        if isinstance(self.normalize, dict):
            self._check_names("normalize", self.normalize, names)
            for name, how in self.normalize.items():
                if how not in ("standard", "block", None):
                    raise ValueError(
                        f"normalize[{name!r}] must be 'standard', 'block' or None; got "
                        f"{how!r}."
                    )

    # -- the steps of one block ---------------------------------------------------------
    def _imputer(self):
        if self.missing == "error":
            return "passthrough"
        if self.missing == "zero":
            return SimpleImputer(
                strategy="constant", fill_value=0.0, keep_empty_features=True
            )
        return SimpleImputer(strategy="mean", keep_empty_features=True)

    def _scaler(self, name, sparse):
        if self._normalize_for(name) is None:
            return "passthrough"
        # Centring a sparse block would densify it; scaling alone keeps it sparse.
        return StandardScaler(with_mean=not sparse)

    def _projector(self, name):
        if self._class_projection():
            return ClassProjection(
                self.projection, estimator=self.projection_estimator, cv=self.cv
            )
        k = self._projection_for(name)
        if k is None:
            return "passthrough"
        # svd_solver="auto" goes randomized on large blocks: random_state seeds it.
        return PCA(n_components=k, random_state=self.random_state)

    def _densify(self, name, block):
        """A sparse block stays sparse only through concatenation without PCA."""
        if sp.issparse(block) and (
            self.fusion != "concat" or self._projection_for(name) is not None
        ):
            return block.toarray()
        return block

    # -- from the encoders' outputs to blocks --------------------------------------------
    def _blocks(self, modalities, outputs, absent, labels):
        """The encoders' outputs as blocks over all the rows (NaN where absent).

        A block of no column is left out of the fusion, as ColumnTransformer leaves
        out a transformer that outputs none. A present item whose output is missing
        in every column is an error: a present but broken item is never taken for a
        missing one.
        """
        blocks = {}
        for m, out in zip(modalities, outputs):
            rows = absent[m.name]
            if out is None:  # no row present
                out = np.empty((0, self._encoded_widths_[m.name]))
            out = _check_block(
                m.name, out, int((~rows).sum()), numeric=not self._keeps_block(m.name)
            )
            self._encoded_widths_.setdefault(m.name, out.shape[1])
            if out.shape[1] == 0:
                continue
            broken = missing_rows(out)
            if broken.any():
                where = np.zeros(len(rows), dtype=bool)
                where[np.flatnonzero(~rows)[broken]] = True
                raise ValueError(
                    f"{type(self).__name__}: encoder {m.name!r} "
                    f"({describe_columns(m.columns)}) returned NaN features for the present "
                    f"item(s) in {int(where.sum())} row(s): {shown_rows(where, labels)}"
                    "; a present but broken item is not treated as missing."
                )
            blocks[m.name] = _scatter(out, rows)
        return blocks

    # -- from blocks to the fused matrix -------------------------------------------------
    def _fuse(self, blocks, absent, *, fit, n_samples, y=None, routed=None):
        """Fill missing rows, normalise, project, weigh and fuse the blocks."""
        if fit:
            if not blocks and self.fusion != "concat":
                raise ValueError(
                    f"{type(self).__name__} has nothing to fuse: every encoder is "
                    "'drop', selects no column or outputs no column."
                )
            self._check_fillable(blocks)
            fused = self._fit_blocks(blocks, y, routed, absent)
            self.sparse_output_ = bool(_density(fused) < self.sparse_threshold)
        elif self._class_projection():
            fused = [
                self._class_scores(name, block, absent[name])
                for name, block in blocks.items()
            ]
        else:
            fused = [
                self._scaled(
                    name,
                    _transform_block(
                        self.block_transformers_[name], self._densify(name, block)
                    ),
                )
                for name, block in blocks.items()
            ]
        names = list(blocks)
        if self.fusion == "concat":
            out = self._stack(fused, names, n_samples)
        else:
            if self.sparse_output_:
                fused = [sp.csr_matrix(block) for block in fused]
            else:
                fused = [b.toarray() if sp.issparse(b) else b for b in fused]
            weights = None
            if self.weights is not None:
                weights = [self._weight_for(name) for name in names]
            out = fuse(fused, self.fusion, weights)
        if self.projection == "proba" and self.fusion in ("product", "max"):
            # Probabilities multiplied (or maxed) across modalities, renormalised to
            # sum to one per row: the product and max rules of decision-level fusion.
            total = out.sum(axis=1, keepdims=True)
            out = np.divide(
                out, total, out=np.full_like(out, 1.0 / out.shape[1]), where=total > 0
            )
        if self.missing == "indicator":
            indicator = np.column_stack(
                [absent[name] for name in names] or [np.zeros((n_samples, 0))]
            ).astype(out.dtype)
            out = (
                sp.hstack([out, indicator], format="csr")
                if sp.issparse(out)
                else np.hstack([out, indicator])
            )
        return out

    def _scaled(self, name, block):
        scale = self.block_scales_[name]
        return block if scale == 1.0 else block * scale

    def _stack(self, blocks, names, n_samples):
        """Concatenate the weighted blocks, as ColumnTransformer stacks its outputs.

        Sparse when ``sparse_output_``; else side by side in the output container
        (``set_output``) when every block is one, keeping each column's dtype; else
        an array.
        """
        blocks = [
            block if self._weight_for(name) == 1.0 else block * self._weight_for(name)
            for block, name in zip(blocks, names)
        ]
        if not blocks:
            return np.zeros((n_samples, 0))
        if self.sparse_output_:
            try:
                blocks = [
                    check_array(b, accept_sparse=True, ensure_all_finite=False)
                    for b in blocks
                ]
            except ValueError as exc:
                raise ValueError(
                    "For a sparse output, all columns should be a numeric or "
                    "convertible to a numeric."
                ) from exc
            return sp.hstack(blocks, format="csr")
        blocks = [b.toarray() if sp.issparse(b) else b for b in blocks]
        adapter = _get_container_adapter("transform", self)
        if adapter and all(adapter.is_supported_container(b) for b in blocks):
            # Unique names for the concatenation; the set_output wrapper names the
            # columns from get_feature_names_out.
            blocks = [
                adapter.rename_columns(b, [f"block{i}_{j}" for j in range(b.shape[1])])
                for i, b in enumerate(blocks)
            ]
            out = adapter.hstack(blocks)
            if out.shape[0] != n_samples:
                raise ValueError(
                    "Concatenating DataFrames from the transformer's output lead to an "
                    "inconsistent number of samples. The output may have Pandas "
                    "Indexes that do not match, or that transformers are returning "
                    "number of samples which are not the same as the number input "
                    "samples."
                )
            return out
        return np.hstack([np.asarray(b) for b in blocks])

    def _check_fillable(self, blocks):
        """A feature missing in every training row leaves nothing to fill it from."""
        if self.missing == "error":
            return
        for name, block in blocks.items():
            nan = nan_mask(block)
            empty = np.flatnonzero(nan.all(axis=0))
            if len(empty):
                raise ValueError(
                    f"{type(self).__name__}: the output of encoder {name!r} is NaN in "
                    f"all {block.shape[0]} training rows in feature(s) "
                    f"{empty[:10].tolist()}; there is nothing to fill it from."
                )

    def _fit_blocks(self, blocks, y, routed, absent):
        """Fit each block's imputation, scaling and projection; return the blocks
        ready to fuse, and set the output columns."""
        if self._paired_projection():
            return self._fit_paired_blocks(blocks)
        if not blocks:
            self.block_transformers_, self.block_scales_ = {}, {}
            self._set_output_indices({})
            return []
        n_samples = next(iter(blocks.values())).shape[0]
        if self._class_projection():
            if y is None:
                raise ValueError(
                    f"projection={self.projection!r} fits a classifier per modality, "
                    "so fit needs class labels y; without y use projection=<int> "
                    "(PCA)."
                )
            n_classes = len(check_labels(y, type(self).__name__))
            width = 1 if self.projection == "decision" and n_classes == 2 else n_classes
        widths = {}
        for name, block in blocks.items():
            k = self._projection_for(name)
            if self._class_projection():
                widths[name] = width
                continue
            if k is not None:
                allowed = min(n_samples, block.shape[1])
                if n_samples < 2:
                    raise ValueError(
                        f"projection needs at least 2 samples to fit PCA; got "
                        f"{n_samples} sample."
                    )
                if k > allowed:
                    raise ValueError(
                        f"projection={k} is larger than modality {name!r} allows: its "
                        f"block has {block.shape[1]} feature(s) and {n_samples} "
                        f"training rows, so PCA keeps at most {allowed} components."
                    )
            widths[name] = block.shape[1] if k is None else k
        if self.fusion in ELEMENTWISE and len(set(widths.values())) > 1:
            raise ValueError(
                f"fusion={self.fusion!r} needs blocks of one width, but they have "
                f"widths {widths}; set projection='proba' to map every block to "
                "class probabilities, or projection=k for k PCA components."
            )
        self._warn_unaligned(len(blocks))
        self.block_transformers_, self.block_scales_ = {}, {}
        fused = []
        for name, block in blocks.items():
            block = self._densify(name, block)
            pipe = Pipeline(
                [
                    ("impute", self._imputer()),
                    ("scale", self._scaler(name, sp.issparse(block))),
                    ("project", self._projector(name)),
                ]
            )
            self.block_transformers_[name] = pipe
            if self._class_projection():
                self.block_scales_[name] = 1.0
                fused.append(
                    self._fit_class_scores(name, block, absent[name], y, routed)
                )
                continue
            z = pipe.fit_transform(block)
            scale = 1.0
            if self._normalize_for(name) == "block":
                variance = float(
                    mean_variance_axis(sp.csr_matrix(z), axis=0)[1].sum()
                    if sp.issparse(z)
                    else z.var(axis=0).sum()
                )
                scale = 1.0 / np.sqrt(variance) if variance > 0 else 1.0
            self.block_scales_[name] = scale
            fused.append(self._scaled(name, z))
        self._set_output_indices(widths)
        return fused

    # -- class projection: a missing modality casts no vote -----------------------------
    def _fit_class_scores(self, name, block, absent, y, routed):
        """Fit a block's class projection on the rows where its modality is present,
        cross-fitted: the training rows are scored by models that did not see them,
        as new rows will be. The other rows get the no-vote scores."""
        rows = np.flatnonzero(~absent)
        pipe = self.block_transformers_[name]
        z = pipe[:-1].fit_transform(_safe_indexing(block, rows))
        params = routed.get("projection_estimator", Bunch(fit={})).fit
        split = routed.splitter.split
        if len(rows) < len(absent):
            # The splitter's groups and the classifier's sample weights, of the
            # present rows only (as the encoders get them).
            params = _check_method_params(block, params, rows)
            split = _check_method_params(block, split, rows)
        labels = check_labels(y, type(self).__name__)
        seen = np.unique(y[rows])
        if len(seen) < len(labels):
            raise ValueError(
                f"{type(self).__name__}: modality {name!r} is present only in "
                f"training rows of the classes {seen.tolist()}, not of "
                f"{np.setdiff1d(labels, seen).tolist()}; projection="
                f"{self.projection!r} fits a classifier on each modality's present "
                "rows, which needs rows of every class."
            )
        z = pipe[-1].fit_transform(z, y[rows], **split, **params)
        return _with_no_vote(z, absent, self.projection)

    def _class_scores(self, name, block, absent):
        """A block's class scores on new rows: those of its projection where the
        modality is present, the no-vote scores where it is missing."""
        pipe = self.block_transformers_[name]
        rows = np.flatnonzero(~absent)
        width = pipe[-1].n_features_out_
        z = (
            pipe.transform(_safe_indexing(block, rows))
            if len(rows)
            else np.empty((0, width))
        )
        return _with_no_vote(z, absent, self.projection)

    def _fit_paired_blocks(self, blocks):
        """Impute and scale each of two blocks, then align them with one CCA/PLS."""
        if len(blocks) != 2:
            raise ValueError(
                f"projection={self.projection!r} aligns two modalities with each "
                f"other; got {len(blocks)} ({list(blocks)}). Use projection='proba' "
                "to align any number of modalities."
            )
        self.block_transformers_, self.block_scales_ = {}, {}
        steps, fitted = {}, []
        for name, block in blocks.items():
            steps[name] = Pipeline(
                [
                    ("impute", self._imputer()),
                    ("scale", self._scaler(name, False)),
                ]
            )
            fitted.append(steps[name].fit_transform(self._densify(name, block)))
        if self.projection_estimator is None:
            widths = [z.shape[1] for z in fitted]
            estimator = default_paired_estimator(
                self.projection, widths, len(fitted[0])
            )
        else:
            estimator = clone(self.projection_estimator)
        estimator.fit(fitted[0], fitted[1])
        out = []
        for (name, pipe), side, z in zip(steps.items(), ("x", "y"), fitted):
            project = PairedProjection(estimator, side, self.projection).fit(z)
            pipe.steps.append(("project", project))
            self.block_transformers_[name] = pipe
            self.block_scales_[name] = 1.0
            out.append(project.transform(z))
        self._set_output_indices(dict.fromkeys(blocks, out[0].shape[1]))
        return out

    def _set_output_indices(self, widths):
        """Each fused modality's output columns: its block for ``"concat"``, the
        whole fused block, which every modality shares, for the other fusions."""
        self._fused_names_ = list(widths)
        if self.fusion == "concat":
            self.modalities_.set_outputs(widths)
            return
        width = (
            tensor_width(list(widths.values()))
            if self.fusion == "tensor"
            else next(iter(widths.values()))
        )
        self.modalities_.set_outputs(dict.fromkeys(widths, slice(0, width)))

    def _warn_unaligned(self, n_blocks):
        """Element-wise fusion of unaligned blocks adds apples to oranges: say so."""
        if self.fusion not in ELEMENTWISE or n_blocks < 2:
            return
        if not (self._class_projection() or self._paired_projection()):
            warnings.warn(
                f"fusion={self.fusion!r} combines coordinate k of every block, but "
                f"projection={self.projection!r} does not map the blocks to one space "
                "(coordinate k of one PCA has nothing to do with coordinate k of "
                "another). Set projection='proba' (class probabilities, cross-fitted) "
                "unless the encoders already share one space (as CLIP's image and "
                "text towers do), or use fusion='concat'.",
                UserWarning,
                stacklevel=4,
            )
        elif self.projection == "decision" and self.fusion == "product":
            warnings.warn(
                "fusion='product' of standardised decision values multiplies signed "
                "scores (two negative scores give a positive one); "
                "projection='proba' makes it the product of probabilities.",
                UserWarning,
                stacklevel=4,
            )


def _with_no_vote(scores, absent, projection):
    """Class scores of the present rows, put among the rows where the modality is
    missing, which get the same score for every class: the uniform probabilities,
    or the mean standardised decision value (0). A missing modality then favours no
    class, whatever ``missing`` fills its features with and whatever the fusion:
    the sum and mean shift every class alike, the product of probabilities is
    renormalised, the maximum keeps the present modalities' best class.
    """
    width = scores.shape[1]
    fill = 1.0 / width if projection == "proba" else 0.0
    out = np.full((len(absent), width), fill)
    out[~absent] = scores
    return out


def _check_block(name, out, n_samples, *, numeric):
    """An encoder's output as a 2-D block of ``n_samples`` rows.

    ``numeric``: a float array or CSR matrix, for the steps that compute on it; else
    the output as it is (a DataFrame keeps its dtypes), as ColumnTransformer takes it.
    """
    if not (getattr(out, "ndim", 0) == 2 or _is_dataframe(out)):
        raise ValueError(
            f"The output of the {name!r} transformer should be 2D (numpy array, "
            f"scipy sparse array, dataframe); encoder {name!r} returned "
            f"{type(out).__name__} of shape {getattr(out, 'shape', None)}."
        )
    if numeric and not _clean_float_array(out):
        if _is_dataframe(out):
            out = out.to_numpy()
        try:
            out = check_array(
                out,
                accept_sparse="csr",
                dtype=[np.float64, np.float32],
                ensure_all_finite="allow-nan",
                # No row is present when a modality is missing in every row.
                ensure_min_samples=0,
                # An encoder may output no column (ColumnTransformer allows it too).
                ensure_min_features=0,
            )
        except ValueError as exc:
            raise ValueError(
                f"the output of encoder {name!r} is not usable: {exc}"
            ) from exc
    # A dataframe of no column has no rows either (polars): it is left out anyway.
    if out.shape[1] > 0 and out.shape[0] != n_samples:
        raise ValueError(
            f"encoder {name!r} returned {out.shape[0]} rows for {n_samples} samples."
        )
    return out


def _transform_block(pipe, block):
    """``pipe.transform(block)``: a fitted block pipeline on new rows.

    A dense float block whose steps are ``"passthrough"`` and a fitted
    :class:`~sklearn.preprocessing.StandardScaler` (the default, ``missing="error"``)
    is scaled here with the arithmetic of the scaler's ``transform`` (its ``mean_``
    and ``scale_`` cast to the block's dtype, subtracted then divided: the same
    values to the last bit), without the per-call validation of the Pipeline and
    the scaler, which costs more than the scaling on one row: the block is a 2-D
    float array already (``_check_block``), and a block of another width goes
    through the pipeline, whose scaler names the mismatch. Any other step, a
    sparse block, or a DataFrame output (``set_output``) takes the pipeline.
    """
    steps = [step for _, step in pipe.steps if step != "passthrough"]
    if not (
        type(block) is np.ndarray
        and block.dtype in (np.float32, np.float64)
        and len(steps) == 1
        and type(steps[0]) is StandardScaler
    ):
        return pipe.transform(block)
    scaler = steps[0]
    if (
        block.shape[1] != scaler.n_features_in_
        or _get_output_config("transform", scaler)["dense"] != "default"
    ):
        return pipe.transform(block)
    out = block.copy()
    if scaler.with_mean:
        out -= scaler.mean_.astype(out.dtype)
    if scaler.with_std:
        out /= scaler.scale_.astype(out.dtype)
    return out


def _clean_float_array(out):
    """True for what ``check_array`` in ``_check_block`` would return unchanged: a
    2-D float32/float64 ndarray without infinity (NaN allowed). The encoders' usual
    output, accepted without check_array's per-call machinery; anything else is
    converted, or refused with its message, by check_array."""
    if not (type(out) is np.ndarray and out.dtype in (np.float32, np.float64)):
        return False
    # The sum is finite unless some value is NaN or infinite (or it overflows):
    # only then is every value looked at.
    return bool(np.isfinite(out.sum())) or not np.isinf(out).any()


def _is_dataframe(out):
    return hasattr(out, "columns") and hasattr(out, "shape")


def _scatter(block, absent):
    """Put a block computed on the present rows back among NaN rows for the absent
    ones (which the ``missing`` policy then fills)."""
    if not absent.any():
        return block
    n_samples, width = len(absent), block.shape[1]
    nan_rows = np.full((int(absent.sum()), width), np.nan)
    order = np.argsort(
        np.concatenate([np.flatnonzero(~absent), np.flatnonzero(absent)]), kind="stable"
    )
    if sp.issparse(block):
        return sp.vstack([block, sp.csr_matrix(nan_rows)], format="csr")[order]
    out = np.vstack([block, nan_rows.astype(block.dtype)])[order]
    return out.reshape(n_samples, width)


def _density(blocks):
    """Fraction of stored values over the blocks; 1.0 when none is sparse."""
    if not any(sp.issparse(b) for b in blocks):
        return 1.0
    stored = sum(b.nnz if sp.issparse(b) else b.shape[0] * b.shape[1] for b in blocks)
    return stored / sum(b.shape[0] * b.shape[1] for b in blocks)
