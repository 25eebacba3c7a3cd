"""lr_meta.agents."""
