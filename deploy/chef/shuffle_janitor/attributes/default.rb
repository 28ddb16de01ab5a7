# shuffle-janitor: every attribute under node['shuffle_janitor']. The config keys have the
# daemon's built-in defaults; config/shuffle-janitor.toml in the project documents each.

# How to install it:
#   'deb'      the Debian package file at ['deb'] (a path on the node)
#   'apt'      the package "shuffle-janitor" from the node's apt repositories (['apt_version'] pins)
#   'tarball'  the release tarball at ['tarball'] (a path on the node): binary in /usr/local/bin,
#              unit in /etc/systemd/system, user and group created
default['shuffle_janitor']['install_method'] = 'deb'
default['shuffle_janitor']['deb'] = ''
default['shuffle_janitor']['apt_version'] = ''
# A rollback to an older package needs this.
default['shuffle_janitor']['allow_downgrade'] = false
default['shuffle_janitor']['tarball'] = ''

# /etc/shuffle-janitor/config.toml, one attribute per key.
default['shuffle_janitor']['roots'] = ['/tmp']
default['shuffle_janitor']['max_age'] = '6h'
default['shuffle_janitor']['min_age'] = '15m'
default['shuffle_janitor']['age_basis'] = %w(mtime atime)
default['shuffle_janitor']['kinds'] = %w(shuffle temp)
default['shuffle_janitor']['protect'] = []
default['shuffle_janitor']['interval'] = '10m'
default['shuffle_janitor']['rescan_interval'] = '24h'
default['shuffle_janitor']['dry_run'] = false
default['shuffle_janitor']['skip_open_files'] = true
default['shuffle_janitor']['state_dir'] = '/var/lib/shuffle-janitor'
default['shuffle_janitor']['watermark_high'] = 0.85
default['shuffle_janitor']['watermark_low'] = 0.75
default['shuffle_janitor']['watermark_poll'] = '5s'
default['shuffle_janitor']['stores_reap'] = true
default['shuffle_janitor']['stores_min_idle'] = 'auto'
default['shuffle_janitor']['stores_executor_startup'] = '10m'
default['shuffle_janitor']['metrics_listen'] = '0.0.0.0:19337'

# /etc/default/shuffle-janitor: extra arguments of `shuffle-janitor run`, e.g. '--log-format json';
# and, if set, --web.listen-address=VALUE and --web.config.file=PATH (the exporter toolkit's web
# configuration file: TLS, basic auth for /metrics; the file itself is yours to manage).
default['shuffle_janitor']['args'] = ''
default['shuffle_janitor']['web_listen_address'] = ''
default['shuffle_janitor']['web_config_file'] = ''

# Roots outside the unit's ReadWritePaths= (/tmp, /data, /var/data, /mnt, /hadoop, /grid) are
# read-only to the service: list their top directories ('-/data1': '-' skips a missing one).
default['shuffle_janitor']['read_write_paths'] = []

# Enable and start the service (only where systemd runs).
default['shuffle_janitor']['service_enabled'] = true
