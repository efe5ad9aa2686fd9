"""splat."""

__all__: list[str] = []
