"""Data sets: small ones shipped with skmm (load_*) and downloaders (fetch_*)."""

from ._av_digits import load_av_digits, make_av_digits
from ._fetch import fetch_file, fetch_fsdd, fetch_mnist, get_data_home
from ._video_digits import load_video_digits

__all__ = [
    "fetch_file",
    "fetch_fsdd",
    "fetch_mnist",
    "get_data_home",
    "load_av_digits",
    "load_video_digits",
    "make_av_digits",
]
