"""Training data, generated on the host: the 2D sets (data2d), scikit-learn's 8x8 digits
(digits) and the reflow couplings of a trained flow (reflow)."""
