"""TF Hub modules of trained t2v models: `python -m t2v.hub_modules.export`."""
