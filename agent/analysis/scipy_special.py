"""scipy.special imported without the numpy submodules none of the daemon's code uses.

scipy (1.14 on) vendors array-api-compat, whose numpy namespace is a copy of numpy's
(`clone_module`: `from numpy import *`, then every name `dir(numpy)` gives), made as
scipy.special is imported. numpy loads its submodules at their first use, so the copy
loaded them all, numpy.f2py (the Fortran wrapper generator) and numpy.testing among them:
about 100 ms of CPU of every daemon start that judges with a sequential or fixed policy
(`python -X importtime`: f2py's `crackfortran` alone is 26 ms). Here those two are left
out of numpy's names while scipy.special is imported, and the copy looks each up in numpy
at its first use instead (a module `__getattr__`), so it names what it named before.
numpy.ma stays: `np.unique` asks it (`np.ma.is_masked`) in the first window's judgment,
which would then import it on the event loop.

scipy (1.15 on) also adds a table of the array backends each function supports to the
docstrings of some 90 functions of scipy.special as it is imported (`xp_capabilities`),
parsing each docstring with its numpydoc copy (`FunctionDoc`) to do it: a third of the
import's CPU (some 45 ms of 140), for docstrings no window reads. Here that parser is
left out while scipy.special is imported (`_docstrings_kept`): each docstring stays as
it was, without the table.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

LEFT_TO_FIRST_USE = ("f2py", "testing")
"""numpy's submodules the copy gets at a first use, not at scipy.special's import."""
COPY = ".array_api_compat.numpy"
"""How the copy of numpy's namespace is named (`scipy._lib.array_api_compat.numpy`)."""


def import_special() -> ModuleType:
    """`scipy.special`, its copy of numpy's namespace looking up `LEFT_TO_FIRST_USE` at
    their first use; as a plain import once numpy's namespace was copied."""
    import numpy

    left = [n for n in LEFT_TO_FIRST_USE if f"numpy.{n}" not in sys.modules]
    if not left or any(name.endswith(COPY) for name in sys.modules):
        return importlib.import_module("scipy.special")
    namespace = numpy.__dict__
    names, listed = namespace["__all__"], namespace.get("__dir__")
    before = set(sys.modules)
    namespace["__all__"] = [n for n in names if n not in left]
    namespace["__dir__"] = lambda: [
        n for n in (listed() if listed else list(namespace)) if n not in left
    ]
    try:
        with _docstrings_kept():
            special = importlib.import_module("scipy.special")
    finally:
        namespace["__all__"] = names
        if listed is None:
            del namespace["__dir__"]
        else:
            namespace["__dir__"] = listed
    for name in set(sys.modules) - before:
        if name.endswith(COPY):
            _look_up_at_first_use(sys.modules[name], numpy, left)
    return special


def _look_up_at_first_use(copy: ModuleType, numpy: ModuleType, left: list[str]) -> None:
    """`copy.<name>` for a name of `left`: numpy's, looked up (imported) at its first use
    and kept; `copy.__all__` names them again, as it did."""
    own: Callable[[str], Any] | None = copy.__dict__.get("__getattr__")

    def __getattr__(name: str) -> Any:
        if name in left:
            value = getattr(numpy, name)
            setattr(copy, name, value)
            return value
        if own is not None:
            return own(name)
        raise AttributeError(f"module {copy.__name__!r} has no attribute {name!r}")

    copy.__getattr__ = __getattr__  # type: ignore[method-assign]
    names = copy.__dict__.get("__all__")
    if isinstance(names, list):
        copy.__dict__["__all__"] = sorted(set(names) | set(left))


class _KeptDocstring:
    """What `xp_capabilities` asks of scipy's `FunctionDoc` (a section to append its table
    to, then the docstring after a signature line), without parsing the docstring: the
    table is dropped and the docstring given back as it was."""

    def __init__(self, function: Any) -> None:
        self.doc = function.__doc__ or ""

    def __getitem__(self, section: str) -> list[str]:
        return []

    def __str__(self) -> str:
        return "\n" + self.doc


@contextlib.contextmanager
def _docstrings_kept() -> Iterator[None]:
    """scipy's `FunctionDoc` is `_KeptDocstring` in the modules imported meanwhile, and
    scipy's own again after; nothing where scipy has no such parser."""
    try:
        docscrape = importlib.import_module("scipy._lib._docscrape")
        parser = docscrape.FunctionDoc
    except (ImportError, AttributeError):  # another scipy: its import as it is
        yield
        return
    setattr(docscrape, "FunctionDoc", _KeptDocstring)  # noqa: B010 - scipy has no hints
    try:
        yield
    finally:
        for module in list(sys.modules.values()):
            if getattr(module, "FunctionDoc", None) is _KeptDocstring:
                setattr(module, "FunctionDoc", parser)  # noqa: B010
