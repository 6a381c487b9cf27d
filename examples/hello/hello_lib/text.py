def shout(name: str) -> str:
    return name.strip().upper()
