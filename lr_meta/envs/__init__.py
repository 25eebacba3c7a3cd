"""lr_meta.envs."""
