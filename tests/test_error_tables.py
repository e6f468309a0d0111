"""Both front ends' error tables cover the whole domain exception tree, and agree with it.

The classes are found by walking `DandiFSError`'s subclasses, so a class added to
dandifs/errors.py fails here until each table maps it; what each class's docstring says it
becomes ("(ENOENT / 404)") is checked against the tables too, so the tree documents them.
"""

from __future__ import annotations

import errno
import re

import pytest

from dandifs import errors
from dandifs.fuse.errnos import errno_for
from dandifs.webdav.errors import STATUS_BY_ERROR, status_for, to_dav_error


def domain_errors() -> list[type[errors.DandiFSError]]:
    found: list[type[errors.DandiFSError]] = []
    pending = [errors.DandiFSError]
    while pending:
        kind = pending.pop(0)
        found.append(kind)
        pending += kind.__subclasses__()
    return [kind for kind in found[1:] if kind.__module__ == "dandifs.errors"]


def documented(kind: type) -> tuple[set[int], set[int]]:
    """The errno values and HTTP statuses the nearest docstring with a "(... / ...)" names."""
    for klass in kind.__mro__:
        match = re.search(r"\(([A-Z, ]*?)\s*/?\s*([\d, ]+)\)", klass.__doc__ or "")
        if match:
            names = {getattr(errno, name) for name in re.findall(r"E[A-Z]+", match.group(1))}
            statuses = {int(code) for code in re.findall(r"\d{3}", match.group(2))}
            return names, statuses
    raise AssertionError(f"{kind.__name__}: no docstring says what it becomes")


def instance(kind: type[errors.DandiFSError]) -> errors.DandiFSError:
    """An instance without calling `__init__`, whose keyword arguments differ by class."""
    return kind.__new__(kind, f"a {kind.__name__}")


@pytest.mark.parametrize("kind", domain_errors(), ids=lambda kind: kind.__name__)
def test_every_domain_error_has_an_http_status_and_an_errno(kind: type) -> None:
    status = status_for(instance(kind))
    assert status != 500, f"{kind.__name__} is missing from STATUS_BY_ERROR"
    assert any(issubclass(kind, mapped) for mapped, _ in STATUS_BY_ERROR)
    assert errno_for(instance(kind)) is not None, f"{kind.__name__} is missing from ERRNO_TABLE"


@pytest.mark.parametrize("kind", domain_errors(), ids=lambda kind: kind.__name__)
def test_the_tables_say_what_the_docstrings_say(kind: type) -> None:
    errnos, statuses = documented(kind)
    if errnos:  # a subclass may name only its status, inheriting its parent's errno
        assert errno_for(instance(kind)) in errnos
    assert status_for(instance(kind)) in statuses


def test_the_walk_finds_the_whole_tree() -> None:
    names = {kind.__name__ for kind in domain_errors()}
    assert {"NotFound", "InvalidPath", "InvalidToken", "UploadFailed"} <= names


def test_an_unexpected_exception_is_a_500_without_its_text() -> None:
    answer = to_dav_error(KeyError("secret detail"))
    assert answer.value == 500 and "secret" not in str(answer.context_info)
