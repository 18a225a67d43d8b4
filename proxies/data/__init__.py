"""The data family: image reading, the degradation, the in-memory image sets, their
spec strings and the fixed hold-out split."""
