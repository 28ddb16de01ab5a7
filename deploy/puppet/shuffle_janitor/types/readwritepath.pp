# One entry of systemd's ReadWritePaths=: an absolute path, "-" in front to skip it if missing.
# No whitespace: systemd splits the list on it.
type Shuffle_janitor::Readwritepath = Pattern[/\A-?\/[^\s"\\]*\z/]
