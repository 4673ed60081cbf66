"""Helpers shared by the tests (pytest puts this folder on the import path: `from conftest import ...`)."""


def first_and_last(info: dict, key: str | None = None, k: int = 5) -> tuple[float, float]:
    """Mean logged loss over the first and the last k log steps of a `trainer.fit` run.

    key: a logged part (e.g. "recon") instead of the total loss.
    """
    values = [row[1] if key is None else row[2][key] for row in info["losses"]]
    return sum(values[:k]) / k, sum(values[-k:]) / k
