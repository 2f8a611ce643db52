"""Probing trained models: interaction orders (J(m)), effective receptive fields, resolution sweeps."""
