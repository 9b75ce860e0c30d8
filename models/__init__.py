"""Model training, export and the shipped weights."""
