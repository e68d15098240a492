"""UPS-RS: the Unified Procedure Step worklist service (PS3.18 §11, semantics in PS3.4 Annex CC)."""
