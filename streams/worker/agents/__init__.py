"""Thin faust shells: decode -> call the domain -> write tables -> send."""
