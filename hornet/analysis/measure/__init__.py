"""Measuring models: params and MACs, speed and memory races, FLOPs matching (no Lightning needed)."""
