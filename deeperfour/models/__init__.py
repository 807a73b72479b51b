"""One file per network; each with a config dataclass saved inside its checkpoints."""
