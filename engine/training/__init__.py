"""One training loop for every method: budget, checkpoints and exact resume, curves, evaluation,
renders, video, exports and metrics. A method (`engine.methods`) supplies the step and what it
trains; see `Method` for the hooks and docs/ARCHITECTURE.md for where new methods go."""
