# A fraction of a filesystem in use, for watermark.high and watermark.low. The daemon takes
# (0, 1]; below 1 % no filesystem is usable, so 0.01 is the floor here. Write 1.0, not 1.
type Shuffle_janitor::Fraction = Float[0.01, 1.0]
