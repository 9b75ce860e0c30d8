"""Training of the two-channel speech model."""
