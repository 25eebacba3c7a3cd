"""lr_meta.optax."""
