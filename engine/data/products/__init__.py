"""Readers of real Earth-observation products (MODIS, VIIRS, rasters) for ``ingest``."""
