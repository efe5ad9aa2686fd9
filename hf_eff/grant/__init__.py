"""grant."""

__all__: list[str] = []
