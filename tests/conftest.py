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


@pytest.fixture
def suite(request) -> str:
    """The built-in suite this pytest run selects (`--harness-suite`; "default" when not given).
    A test that checks the library itself (every reference rounds correctly) checks the cases of
    this suite: the quick suite in the README's test command, the whole default library in tox's
    `unit` env and the workflow."""
    plugin = request.config.pluginmanager.get_plugin("harness_session")
    return (plugin.values.get("suite") if plugin is not None else None) or "default"
