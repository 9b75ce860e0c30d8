"""Weights that ship with the station, each with a JSON card (sha256, input spec, figures)."""
