"""Fitted state that loads without running code: tensors as safetensors, objects as data.

A fitted skmm estimator is saved with ``joblib``/``pickle`` or with ``skops.io``. Both
call the estimator's ``__getstate__``, which swaps what only pickle could store for
small skmm types holding plain data, each rebuilt by its constructor:

- :class:`TensorState`: a state dict (``module_``), or a nested training state (an
  optimizer's, with ints, floats and lists among the tensors), as the bytes of one
  safetensors file with a sha256 digest of its tensors. Built from bytes that are not
  safetensors, or whose tensors do not match the digest, it raises ``ValueError``: a
  tampered weights blob fails to load.
- :class:`TorchClass`: a class of ``torch.optim`` (the ``optimizer=`` parameter),
  stored by name and imported only from there.
- :class:`SkrubState`: the state of the one-line learners' skrub ``TableVectorizer``,
  as a skops file of its own that may hold only the skrub types listed in
  :data:`SKRUB_TRUSTED` (skmm vouches for them, as skops does for scikit-learn's).
- :class:`TokenizerJSON`, :class:`HFConfig`, :class:`HFPreprocessor`: a
  ``tokenizers.Tokenizer``, a Hugging Face model config, and a Hugging Face tokenizer
  or feature extractor, as their own JSON (and text) files, read back by their
  libraries' parsers with remote code off; :class:`OpenClipTokenizer`: open_clip's
  tokenizer, as its settings (its vocabulary ships with open_clip).

A module passed as ``backbone=`` is the user's code: it pickles (joblib), and skops
cannot store it.

Each is a type whose ``__reduce__`` is ``(type, (data, ...))``, which skops stores as
a constructor call on data (``ConstructorFromReduceNode``), and pickle as well; so
``skops.io.get_untrusted_types`` lists only skmm's, scikit-learn's and numpy's own
types for a fitted skmm estimator, and a skops file holds no pickle.
"""

import hashlib
import io
import json
import os
import tempfile
import zipfile

import numpy as np
import torch

__all__ = [
    "HFConfig",
    "HFPreprocessor",
    "OpenClipTokenizer",
    "SKRUB_TRUSTED",
    "SkrubState",
    "TensorState",
    "TokenizerJSON",
    "TorchClass",
    "portable_state",
    "restored_state",
]


def _safetensors():
    try:
        from safetensors.torch import load, save
    except ImportError:
        raise ImportError(
            "saving or loading a fitted skmm estimator that holds torch weights needs "
            "the package 'safetensors', a dependency of skmm, which is not installed: "
            "reinstall skmm"
        ) from None
    return save, load


def _digest(data, header_length):
    """The sha256 of the tensors' bytes (what follows the safetensors header)."""
    return hashlib.sha256(memoryview(data)[8 + header_length :]).hexdigest()


def _header(data):
    """The JSON header of safetensors bytes, and its length; ValueError if malformed."""
    if not isinstance(data, (bytes, bytearray)) or len(data) < 8:
        raise ValueError("not safetensors bytes (too short)")
    length = int.from_bytes(data[:8], "little")
    if length > len(data) - 8:
        raise ValueError("not safetensors bytes (the header runs past the end)")
    try:
        header = json.loads(bytes(data[8 : 8 + length]))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("not safetensors bytes (the header is not JSON)") from None
    if not isinstance(header, dict):
        raise ValueError("not safetensors bytes (the header is not a JSON object)")
    return header, length


# -- nested states: tensors in the file, the structure in its metadata -----------------
def _flatten(value, tensors):
    """A JSON-able skeleton of ``value``; its tensors go into ``tensors``."""
    if isinstance(value, torch.Tensor):
        key = str(len(tensors))
        # Own contiguous storage: safetensors refuses tensors sharing memory.
        tensors[key] = value.detach().to("cpu").contiguous().clone()
        return {"tensor": key}
    if isinstance(value, dict):
        return {
            "dict": [
                [_flatten(k, tensors), _flatten(v, tensors)] for k, v in value.items()
            ]
        }
    if isinstance(value, (list, tuple)):
        kind = "list" if isinstance(value, list) else "tuple"
        return {kind: [_flatten(v, tensors) for v in value]}
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise TypeError(
        f"a torch training state holds a {type(value).__name__}, which skmm cannot "
        "store as data (tensors, numbers, strings, lists and dicts only)."
    )


def _unflatten(node, tensors):
    ((kind, content),) = node.items()
    if kind == "tensor":
        return tensors[content]
    if kind == "dict":
        return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in content}
    if kind == "list":
        return [_unflatten(v, tensors) for v in content]
    if kind == "tuple":
        return tuple(_unflatten(v, tensors) for v in content)
    if kind == "value":
        return content
    raise ValueError(f"unknown node {kind!r} in the structure of a tensor state")


class TensorState:
    """Tensors, or a nested state holding tensors, as the bytes of a safetensors file.

    A flat state dict (names to tensors) keeps its names as the tensors' names; any
    other structure (an optimizer's state: dicts with int keys, lists, numbers) is
    stored as a JSON skeleton in the file's metadata beside its tensors, with the name
    of what they belong to (``owner``, for error messages). The header is checked by
    parsing it and by loading the tensors into the architecture they belong to; the
    tensors' bytes by their sha256 digest.

    Parameters
    ----------
    data : bytes
        A safetensors file made by :meth:`from_state`.
    digest : str
        The sha256 hex digest of its tensors' bytes. Checked here: bytes that are not
        safetensors, or whose tensors do not match the digest, raise ``ValueError``.
    """

    def __init__(self, data, digest):
        try:
            header, length = _header(data)
        except ValueError as exc:
            raise ValueError(
                f"skmm refuses a weights blob that is {exc}: the file was modified or "
                "is not a file skmm saved."
            ) from None
        meta = header.get("__metadata__") or {}
        owner = meta.get("skmm.owner", "an estimator")
        if digest != _digest(data, length):
            raise ValueError(
                f"the weights of {owner} do not match their sha256 digest: the file "
                "was modified or corrupted after it was saved; skmm refuses to load "
                "it."
            )
        self.data = bytes(data)
        self.digest = digest
        self.owner = owner
        self._structure = meta.get("skmm.structure")

    @classmethod
    def from_state(cls, state, owner="an estimator"):
        """Store ``state``: a dict of tensors, or nested dicts/lists with tensors."""
        save, _ = _safetensors()
        flat = isinstance(state, dict) and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
        )
        if flat:
            tensors = {
                k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()
            }
            meta = {}
        else:
            tensors = {}
            meta = {"skmm.structure": json.dumps(_flatten(state, tensors))}
        meta["skmm.owner"] = owner
        data = save(tensors, metadata=meta)
        _, length = _header(data)
        return cls(data, _digest(data, length))

    def restore(self):
        """The stored state, tensors on the CPU."""
        _, load = _safetensors()
        try:
            tensors = load(self.data)
        except Exception as exc:  # noqa: BLE001 - the parser's own error type
            raise ValueError(
                f"the weights of {self.owner} cannot be read as safetensors: {exc}"
            ) from None
        if self._structure is None:
            return tensors
        return _unflatten(json.loads(self._structure), tensors)

    def __reduce__(self):
        return (type(self), (self.data, self.digest))

    def __repr__(self):
        return f"{type(self).__name__}({self.owner}, {len(self.data)} bytes)"


# -- library objects, stored as data ----------------------------------------------------
class _Portable:
    """Base of the stand-ins: ``__reduce__`` is a constructor call on plain data."""

    def __reduce__(self):
        return (type(self), self._args)

    def __repr__(self):
        return f"{type(self).__name__}(...)"


class TorchClass(_Portable):
    """A ``torch.optim`` optimizer class (the ``optimizer=`` parameter), by name.

    Only classes of ``torch.optim`` that subclass ``torch.optim.Optimizer`` are
    imported back; anything else raises ``ValueError``.
    """

    def __init__(self, module, name):
        if not (module == "torch.optim" or module.startswith("torch.optim.")):
            raise ValueError(
                f"skmm restores optimizer classes of torch.optim only, not "
                f"{module}.{name}."
            )
        import importlib

        cls = getattr(importlib.import_module(module), name, None)
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
            raise ValueError(f"{module}.{name} is not a torch.optim optimizer class.")
        self.value = cls
        self._args = (module, name)

    @classmethod
    def applies(cls, value):
        return (
            isinstance(value, type)
            and issubclass(value, torch.optim.Optimizer)
            and value.__module__.startswith("torch.optim")
        )

    @classmethod
    def of(cls, value):
        return cls(value.__module__, value.__qualname__)


class TokenizerJSON(_Portable):
    """A ``tokenizers.Tokenizer`` as its JSON serialisation (wordllama's, say)."""

    def __init__(self, data):
        from tokenizers import Tokenizer

        self.value = Tokenizer.from_str(bytes(data).decode("utf-8"))
        self._args = (bytes(data),)

    @classmethod
    def applies(cls, value):
        return _is_instance(value, "tokenizers", "Tokenizer")

    @classmethod
    def of(cls, value):
        return cls(value.to_str().encode("utf-8"))


class HFConfig(_Portable):
    """A Hugging Face model config (the architecture of an ``"hf:"`` tower), as JSON."""

    def __init__(self, data):
        from transformers import AutoConfig

        config = json.loads(data)
        self.value = AutoConfig.for_model(config.pop("model_type"), **config)
        self._args = (data,)

    @classmethod
    def applies(cls, value):
        return _is_instance(value, "transformers", "PretrainedConfig")

    @classmethod
    def of(cls, value):
        return cls(value.to_json_string(use_diff=False))


# Hugging Face preprocessors: their Auto class, and the files they may consist of. No
# pickle-based vocabulary (``.pkl``, ``.bin``) is ever written back, nor read.
_HF_LOADERS = {
    "tokenizer": "AutoTokenizer",
    "feature_extractor": "AutoFeatureExtractor",
    "image_processor": "AutoImageProcessor",
}
_HF_FILE_SUFFIXES = (".json", ".txt", ".model", ".tiktoken")


class HFPreprocessor(_Portable):
    """A Hugging Face tokenizer, feature extractor or image processor, as its files.

    ``save_pretrained`` writes them (JSON, vocabulary text, a sentencepiece model);
    they are read back by the ``Auto`` class with ``local_files_only=True`` and
    ``trust_remote_code=False``. File names are plain names with the suffixes above.
    """

    def __init__(self, kind, files):
        import transformers

        if kind not in _HF_LOADERS:
            raise ValueError(f"unknown Hugging Face preprocessor kind {kind!r}.")
        for name in files:
            if (
                os.path.basename(name) != name
                or name.startswith(".")
                or not name.endswith(_HF_FILE_SUFFIXES)
            ):
                raise ValueError(
                    f"skmm refuses the preprocessor file {name!r}: plain names of "
                    f"{', '.join(_HF_FILE_SUFFIXES)} files only."
                )
        with tempfile.TemporaryDirectory() as folder:
            for name, content in files.items():
                with open(os.path.join(folder, name), "wb") as f:
                    f.write(content)
            loader = getattr(transformers, _HF_LOADERS[kind])
            self.value = loader.from_pretrained(
                folder, local_files_only=True, trust_remote_code=False
            )
        self._args = (kind, dict(files))

    @classmethod
    def applies(cls, value):
        return cls._kind(value) is not None

    @staticmethod
    def _kind(value):
        if not type(value).__module__.startswith("transformers."):
            return None
        import transformers

        if isinstance(value, transformers.PreTrainedTokenizerBase):
            return "tokenizer"
        if isinstance(value, transformers.ImageProcessingMixin):
            return "image_processor"
        if isinstance(value, transformers.FeatureExtractionMixin):
            return "feature_extractor"
        return None

    @classmethod
    def of(cls, value):
        with tempfile.TemporaryDirectory() as folder:
            value.save_pretrained(folder)
            files = {}
            for name in sorted(os.listdir(folder)):
                if name.endswith(_HF_FILE_SUFFIXES):
                    with open(os.path.join(folder, name), "rb") as f:
                        files[name] = f.read()
        return cls(cls._kind(value), files)


class OpenClipTokenizer(_Portable):
    """open_clip's ``SimpleTokenizer``, rebuilt from the vocabulary open_clip ships.

    Stored as its settings (context length, text cleaning, special tokens) and the
    size of its vocabulary, which must match the rebuilt one's: a tokenizer made from
    another BPE file is not one this stand-in applies to.
    """

    def __init__(self, context_length, clean, special_tokens, vocab_size):
        from open_clip.tokenizer import SimpleTokenizer

        value = SimpleTokenizer(
            additional_special_tokens=list(special_tokens[2:]) or None,
            context_length=context_length,
            clean=clean,
        )
        if value.vocab_size != vocab_size:
            raise ValueError(
                f"the installed open_clip's tokenizer has {value.vocab_size} tokens, "
                f"the saved one {vocab_size}."
            )
        self.value = value
        self._args = (context_length, clean, list(special_tokens), vocab_size)

    @classmethod
    def applies(cls, value):
        return (
            _is_instance(value, "open_clip.tokenizer", "SimpleTokenizer")
            and value.reduction_fn is None
            and value.clean_fn.__name__.startswith("_clean_")
            and value.vocab_size == 49408 + len(value.all_special_ids) - 2
        )

    @classmethod
    def of(cls, value):
        special = [value.decoder[i] for i in value.all_special_ids]
        clean = value.clean_fn.__name__[len("_clean_") :]
        return cls(value.context_length, clean, special, value.vocab_size)


# The types the fitted state of skrub's TableVectorizer is made of, with its default
# encoders (what the one-line learners build): transformers and column selectors whose
# state is plain data, the functions the selectors test columns with, and the data
# types of a date column's state (dtypes, time zones). None runs code when built from
# its state by skops (``__new__``, then the attributes set); tests/test_persistence.py
# checks that tables of every column kind need no other type.
SKRUB_TRUSTED = (
    "skrub._apply_to_each_col.ApplyToEachCol",
    "skrub._check_input.CheckInputDataFrame",
    "skrub._clean_categories.CleanCategories",
    "skrub._clean_null_strings.CleanNullStrings",
    "skrub._dataframe._common.is_any_date",
    "skrub._dataframe._common.is_categorical",
    "skrub._dataframe._common.is_numeric",
    "skrub._datetime_encoder.DatetimeEncoder",
    "skrub._drop_uninformative.DropUninformative",
    "skrub._duration_to_float.DurationToFloat",
    "skrub._string_encoder.StringEncoder",
    "skrub._table_vectorizer.PassThrough",
    "skrub._table_vectorizer.ShortReprDict",
    "skrub._table_vectorizer._created_by_predicate",
    "skrub._to_datetime.ToDatetime",
    "skrub._to_float.ToFloat",
    "skrub._to_str.ToStr",
    "skrub.selectors._base.All",
    "skrub.selectors._base.And",
    "skrub.selectors._base.Cols",
    "skrub.selectors._base.Filter",
    "skrub.selectors._base.Sub",
    "skrub.selectors._selectors._cardinality_below",
    "datetime.timedelta",
    "datetime.timezone",
    "numpy.dtype",
    "pandas.DatetimeTZDtype",
    "zoneinfo.ZoneInfo",
)


def _check_time_zones(data):
    """Refuse a stored date dtype whose time zone is a file: pandas reads
    ``dateutil/<path>`` from that path (skops cannot store dateutil's zones, so no
    file skmm wrote holds one); zoneinfo's keys are checked by zoneinfo itself."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))

    def walk(node, in_dtype):
        if isinstance(node, list):
            for value in node:
                walk(value, in_dtype)
        if not isinstance(node, dict):
            return
        in_dtype = in_dtype or node.get("__class__") == "DatetimeTZDtype"
        if in_dtype and node.get("__loader__") == "JsonNode":
            text = json.loads(node.get("content", "null"))
            if isinstance(text, str) and text.strip().lower().startswith("dateutil"):
                raise ValueError(
                    "skmm refuses the stored state of a skrub TableVectorizer: a "
                    f"date dtype names the time zone {text!r}, which pandas would "
                    "read from a file; the file was modified, or was not saved by "
                    "skmm."
                )
        for value in node.values():
            walk(value, in_dtype)

    walk(schema, False)


class SkrubState(_Portable):
    """The state of a skrub estimator, as a skops file holding only trusted types.

    skops lists every skrub type it meets for the user to trust; this stand-in lets
    skmm vouch for the fixed set :data:`SKRUB_TRUSTED` instead, so that a one-line
    learner's file lists skmm's, scikit-learn's and numpy's types only. Built from a
    file that names any other type, it raises ``ValueError`` (skops's own check).

    Parameters
    ----------
    data : bytes
        A skops file made by :meth:`of`.
    """

    def __init__(self, data):
        import skops.io as sio
        from skops.io.exceptions import UntrustedTypesFoundException

        if not isinstance(data, (bytes, bytearray)) or not zipfile.is_zipfile(
            io.BytesIO(data)
        ):
            raise ValueError(
                "skmm refuses the stored state of a skrub TableVectorizer: it is not "
                "a skops file; the file was modified, or was not saved by skmm."
            )
        _check_time_zones(data)
        try:
            self.value = sio.loads(bytes(data), trusted=list(SKRUB_TRUSTED))
        except UntrustedTypesFoundException as exc:
            raise ValueError(
                f"skmm refuses the stored state of a skrub TableVectorizer: {exc} "
                "skmm vouches only for the skrub types its one-line learners are "
                "made of (listed in the persistence guide): the file was modified, "
                "or was not saved by skmm."
            ) from None
        self._args = (bytes(data),)

    @classmethod
    def of(cls, value):
        """``value`` stored, or None when it holds a type outside the trusted set.

        None leaves the object to the enclosing file, where skops lists its types for
        the user to trust, as it would without skmm.
        """
        import skops.io as sio

        try:
            # Deflated: skops's indented JSON of skrub's nested column selectors is
            # most of the file (megabytes), and it compresses a hundredfold.
            data = sio.dumps(value, compression=zipfile.ZIP_DEFLATED)
        except Exception:  # noqa: BLE001 - what skops cannot store: the file's
            return None  # own dump lists it, or fails on it, as without skmm
        if not set(sio.get_untrusted_types(data=data)) <= set(SKRUB_TRUSTED):
            return None
        stored = cls.__new__(cls)
        stored.value, stored._args = value, (data,)
        return stored


def _is_instance(value, package, name):
    """``isinstance`` against ``package``'s class ``name``, importing nothing new."""
    import sys

    if package not in sys.modules:
        return False
    module = sys.modules[package]
    cls = getattr(module, name, None)
    return isinstance(cls, type) and isinstance(value, cls)


_STAND_INS = (TorchClass, TokenizerJSON, HFConfig, HFPreprocessor, OpenClipTokenizer)


def _portable(value):
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_portable(v) for v in value)
    for stand_in in _STAND_INS:
        if stand_in.applies(value):
            return stand_in.of(value)
    return value


def _restored(value):
    if isinstance(value, _Portable):
        return value.value
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_restored(v) for v in value)
    return value


def portable_state(state):
    """``state`` (an object's ``__dict__``) with library objects swapped for data."""
    return {k: _portable(v) for k, v in state.items()}


def restored_state(state):
    """The inverse of :func:`portable_state`."""
    return {k: _restored(v) for k, v in state.items()}
