"""The declarative layer: specs, the engine, IO and the CLI."""
