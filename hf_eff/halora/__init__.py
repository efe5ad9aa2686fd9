"""halora."""

__all__: list[str] = []
