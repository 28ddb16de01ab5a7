# The timestamps that make a file's last use (config key `age_basis`).
type Shuffle_janitor::Agebasis = Enum['mtime', 'atime', 'ctime']
