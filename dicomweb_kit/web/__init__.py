"""The Starlette web layer: the only part of dicomweb-kit that knows about HTTP frameworks."""
