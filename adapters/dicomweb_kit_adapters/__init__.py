"""Storage adapters for dicomweb-kit. Each backend is its own module, imported only when used."""
