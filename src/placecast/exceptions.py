"""Every error and warning placecast raises.

Hierarchy::

    PlacecastError (Exception)
    ├── DataError            bad events, columns, CRS, files, region polygons
    ├── ParameterError       (also ValueError) a parameter out of range or of the wrong kind
    └── NotFittedError       (also AttributeError) ``predict`` before ``fit``

    PlacecastWarning (UserWarning)
    ├── ConvergenceWarning   an iterative fit stopped before it converged
    ├── DataQualityWarning   data were usable but something about them is suspect
    └── UndefinedMetricWarning  a metric is undefined for the input and returned ``nan``

Messages say what went wrong, where (file, row, column) and how to fix it. They speak
the library's language: a parameter is named by its Python name in backticks (`` `end` ``)
and listed in ``params``; the command line shows it as its flag (``--end``) and the web
service as its JSON field, through :func:`render_message`. No library message names a
command-line flag.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "DataQualityWarning",
    "NotFittedError",
    "ParameterError",
    "PlacecastError",
    "PlacecastWarning",
    "UndefinedMetricWarning",
    "cite",
    "render_message",
]


class PlacecastError(Exception):
    """Base class of every error placecast raises on purpose.

    Parameters
    ----------
    message
        What went wrong and how to fix it. A parameter is named by its Python name in
        backticks, e.g. ``"origin 2018-01-01 is too early: pass a later `start`"``.
    param
        The parameter (or parameters) the message is about, by Python name; the first is
        the one to change. Front ends map them to their own names (``--start`` on the
        command line, ``start`` in a JSON body) with :func:`render_message`.

    Examples
    --------
    >>> err = ParameterError("pass a later `start`", param="start")
    >>> err.params, str(err)
    (('start',), 'pass a later `start`')
    >>> render_message(err, lambda name: "--" + name.replace("_", "-"))
    'pass a later --start'
    """

    def __init__(self, *args: object, param: str | Sequence[str] | None = None) -> None:
        super().__init__(*args)
        if param is None:
            self.params: tuple[str, ...] = ()
        elif isinstance(param, str):
            self.params = (param,)
        else:
            self.params = tuple(param)

    @property
    def param(self) -> str | None:
        """The parameter to change, by Python name (``None`` when not about one)."""
        return self.params[0] if self.params else None


class DataError(PlacecastError):
    """Input data (a file, its columns, rows, CRS or region) cannot be used as given."""


class ParameterError(PlacecastError, ValueError):
    """A parameter has a value or type placecast cannot use."""


class NotFittedError(PlacecastError, AttributeError):
    """A model was asked to predict before ``fit`` was called."""


class PlacecastWarning(UserWarning):
    """Base class of every warning placecast emits."""


class ConvergenceWarning(PlacecastWarning):
    """An iterative estimator stopped at its iteration limit before converging."""


class DataQualityWarning(PlacecastWarning):
    """The data were usable, but something about them deserves a look."""


class UndefinedMetricWarning(PlacecastWarning):
    """A metric is undefined for its input (e.g. no events in the window); ``nan`` returned."""


def cite(name: str | None, default: str) -> tuple[str, tuple[str, ...]]:
    """How a message names the value of parameter ``name``, and the ``param`` to raise with.

    For helpers that check a value on behalf of a caller (``parse_length(text,
    name="cell_size")``): a Python parameter name is written in backticks and becomes the
    error's ``param``; ``None`` gives the plain word ``default`` and no parameter; any other
    text (a phrase such as ``"model parameter 'bandwidth'"``) is used as it is.

    Examples
    --------
    >>> cite("cell_size", "length")
    ('`cell_size`', ('cell_size',))
    >>> cite(None, "length")
    ('length', ())
    """
    if name is None:
        return default, ()
    if name.isidentifier():
        return f"`{name}`", (name,)
    return name, ()


def render_message(error: BaseException, name_for: Callable[[str], str]) -> str:
    """``str(error)`` with each of its parameters, written `` `name` ``, in a front end's terms.

    Parameters
    ----------
    error
        Any exception; only a :class:`PlacecastError`'s ``params`` are renamed.
    name_for
        Maps a Python parameter name to what the front end calls it (a flag, a JSON field).

    Returns
    -------
    str
        The message; backticked names that are not among ``params`` are left as they are.
    """
    text = str(error)
    params = getattr(error, "params", ())
    if not params:
        return text
    pattern = re.compile(r"`(" + "|".join(re.escape(p) for p in params) + r")`")
    return pattern.sub(lambda match: name_for(match.group(1)), text)
