"""Point extracts at the flux towers (AppEEARS point samples, ORNL DAAC / MODISTools subsets,
Earth Engine table exports, the long CSV) -> the contract variables of the towers as a cube whose
pixels are the towers, so that the feature code computes the towers' predictors exactly as it
does for the map's pixels.

``extracts.read_points`` finds and reads the files (one reader module per format, decoding with
the ingest catalog's layers, scale factors and QC rules); ``cube.point_cube`` matches their
locations to the towers, reduces windows and merges sources, and builds the cube.
"""
