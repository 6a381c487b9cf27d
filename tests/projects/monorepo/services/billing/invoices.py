"""Another service: never imported by ml_service, so its bundle leaves this file out."""


def total(amounts: list[float]) -> float:
    return sum(amounts)
