"""Edge analyzer: two-channel call audio to turn-taking events, as a streaming pipeline."""
