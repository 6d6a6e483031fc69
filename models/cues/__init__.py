"""Physical cues of a near-miss, computed from stored road-user tracks and ego-motion (no training):
per-track kinematics, conflicts between road users, abrupt dynamics, the ego's response, riders.
The `conflict` head (models/conflict.py) fuses them."""
