"""Drawings for prediction writers: palette masks, boxes and masks on images, side-by-side sheets."""
