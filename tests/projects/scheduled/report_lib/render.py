from datetime import datetime


def headline(region: str, when: datetime) -> str:
    return f"report for {region} at {when:%Y-%m-%d %H:%M}"
