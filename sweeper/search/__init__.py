"""Optuna storages, samplers, pruners (`study`); coarse to fine (`zoom`)."""
