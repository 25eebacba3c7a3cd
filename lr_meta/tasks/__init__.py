"""lr_meta.tasks."""
