"""lr_meta.features."""
