"""Kept for imports of earlier releases: the thread hop is the core's (:mod:`dicomweb_kit.threads`)."""

from dicomweb_kit.threads import WorkerThreads

__all__ = ["WorkerThreads"]
