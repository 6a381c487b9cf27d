def scale(values: list[float], factor: float) -> list[float]:
    return [v * factor for v in values]
