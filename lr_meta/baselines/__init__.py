"""lr_meta.baselines."""
