"""Cross-framework numerical conformance harness for the softmax family."""

__version__ = "0.1.0"

#: Version of the JSON Lines result schema (docs/records.md). Bump on any incompatible change.
SCHEMA_VERSION = 2  # 2: `cotangent` in every result and in its key

#: The public API (harness/api.py), imported on first use: `import harness` and the pytest plugin
#: that every pytest run of an environment with the package loads stay free of numpy and the rest.
__all__ = ["exact", "assert_conforms", "cases_for", "Failure"]


def __getattr__(name: str):  # noqa: ANN202 - PEP 562 lazy attributes
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
