def render(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)
