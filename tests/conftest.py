"""Fixtures the harness's own tests share."""

import contextlib

import pytest

from harness import adapters as A


@pytest.fixture
def registered():
    """reg(cls, name=cls.name) registers an adapter class for the test and returns its name; each
    is unregistered (its instance closed: a Keras child ends) when the test ends."""
    with contextlib.ExitStack() as stack:
        yield lambda cls, name=None: stack.enter_context(A.registered(name or cls.name, cls))
