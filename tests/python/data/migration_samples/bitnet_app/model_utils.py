"""Not BitNet either: small helpers whose module name starts with "model"."""
from models import REGISTRY


def describe(name: str) -> str:
    return REGISTRY[name]
