# An absolute path (globs allowed where the daemon expands them): starts with "/", no control
# characters, no double quote or backslash (which would need escaping in TOML and in systemd
# files). Like Stdlib::Unixpath, without depending on puppetlabs-stdlib.
type Shuffle_janitor::Absolutepath = Pattern[/\A\/[^\x00-\x1f\x7f"\\]*\z/]
