"""SQL files of queuer, shipped as package data and read with ``load``."""

from importlib.resources import files


def load(name: str) -> str:
    """The text of ``<name>.sql`` from this package."""
    return (files(__name__) / f"{name}.sql").read_text(encoding="utf-8")
