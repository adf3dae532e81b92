"""Cross-framework numerical conformance harness for the softmax family."""

__version__ = "0.1.0"

#: Version of the JSON Lines result schema (docs/records.md). Bump on any incompatible change.
SCHEMA_VERSION = 2  # 2: `cotangent` in every result and in its key
