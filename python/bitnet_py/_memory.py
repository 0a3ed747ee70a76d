"""Memory statistics: model, KV-cache and scratch bytes, process RSS."""

from __future__ import annotations

import gc
import logging
import os
from typing import Any, Optional

from ._engine import settings

logger = logging.getLogger(__name__)


def rss_bytes() -> int:
    """Resident set size of this process in bytes (0 when unknown)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        try:
            import resource

            r = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            return r if os.uname().sysname == "Darwin" else r * 1024
        except Exception:  # pragma: no cover
            return 0


def record_peak() -> None:
    """Remember the peak RSS (called after each generation while monitoring)."""
    r = rss_bytes()
    if r > settings.peak_rss:
        settings.peak_rss = r
    logger.debug("rss %.1f MiB", r / 2**20)


def enable_memory_monitoring(enabled: bool = True) -> None:
    """Record the peak RSS after every generation (see :func:`get_memory_stats`)."""
    settings.memory_monitoring = bool(enabled)
    if enabled:
        record_peak()


def _models(obj: Any) -> list[Any]:
    from .model import _LIVE, BitNetModel

    if obj is None:
        return list(_LIVE)
    if isinstance(obj, BitNetModel):
        return [obj]
    m = getattr(obj, "model", None) or getattr(obj, "prefill_model", None)
    if isinstance(m, BitNetModel):
        return [m]
    return []


def get_memory_stats(obj: Optional[Any] = None) -> dict[str, Any]:
    """Bytes used: ``model_bytes`` (weights of the live models, or of
    ``obj``: a model or inference engine), ``kv_cache_bytes`` and
    ``scratch_bytes`` (contexts held for reuse, or the last one used),
    ``rss_bytes`` (process), and the same in MB/GB for convenience."""
    models = _models(obj)
    model_bytes = kv = scratch = 0
    for m in models:
        model_bytes += m.weight_bytes
        for e in list(m._engines.values()):
            pk = e.pooled_kv_bytes()
            kv += pk if pk else e.last_kv_bytes
            ps = e.pooled_scratch_bytes()
            scratch += ps if ps else e.last_scratch_bytes
    rss = rss_bytes()
    if settings.memory_monitoring:
        record_peak()
    return {
        "model_bytes": model_bytes,
        "kv_cache_bytes": kv,
        "scratch_bytes": scratch,
        "rss_bytes": rss,
        "peak_rss_bytes": max(settings.peak_rss, rss) if settings.memory_monitoring else None,
        "monitoring": settings.memory_monitoring,
        "num_models": len(models),
        "model_mb": model_bytes / 2**20,
        "rss_mb": rss / 2**20,
        "total_gb": (model_bytes + kv + scratch) / 2**30,
    }


def cleanup_memory(obj: Optional[Any] = None) -> dict[str, Any]:
    """Free the contexts kept for reuse and run the garbage collector."""
    for m in _models(obj):
        for e in list(m._engines.values()):
            e.clear_pool()
    gc.collect()
    return get_memory_stats(obj)


optimize_memory = cleanup_memory

__all__ = ["get_memory_stats", "enable_memory_monitoring", "cleanup_memory", "optimize_memory", "rss_bytes"]
