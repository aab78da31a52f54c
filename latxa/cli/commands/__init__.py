"""One module per verb group; each exposes ``register(app)``. Keep imports of heavy layers inside the commands."""
