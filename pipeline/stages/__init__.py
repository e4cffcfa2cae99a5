"""DVC stages: one module per stage of dvc.yaml, each a thin CLI over the library in pipeline/."""
