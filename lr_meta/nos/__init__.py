"""lr_meta.nos."""
