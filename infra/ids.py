"""Construct ids made from names (a variant, a model kind, a table target): logical ids keep these."""


def pascal(name: str) -> str:
    """"model-b" / "model_b" -> "ModelB"."""
    return "".join(part[:1].upper() + part[1:] for part in name.replace("_", "-").split("-") if part)
