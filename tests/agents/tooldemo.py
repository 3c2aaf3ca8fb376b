"""Functions the CLI test publishes by module:function."""


def reverse(text: str) -> str:
    """Reverse a text."""
    return text[::-1]
