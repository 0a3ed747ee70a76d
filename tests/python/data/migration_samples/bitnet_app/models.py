"""Not BitNet: the project's own model registry (a distractor for the migration)."""
REGISTRY = {"bitnet": "BitNet b1.58 2B4T", "other": "something else"}
