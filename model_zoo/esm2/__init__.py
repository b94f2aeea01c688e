"""ESM-2 plugin."""


def specs():
    return []
